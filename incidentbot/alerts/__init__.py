"""Alert ingestion: Alertmanager webhooks in, incidents declared or attached, every alert kept.

``config`` (routing rules) is imported by :mod:`incidentbot.config`, so this package's
``__init__`` stays empty: importing it must not pull in the database or the web framework.
"""
