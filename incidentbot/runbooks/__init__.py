"""Executable runbooks: YAML files of typed params and steps, run durably on the ledger.

See ``docs/runbooks.md``. ``definition``, ``loader`` and ``checker`` read and check the files,
``expr`` evaluates their Jinja2 expressions, ``actions`` holds the action plugins, ``engine`` runs
them.
"""
