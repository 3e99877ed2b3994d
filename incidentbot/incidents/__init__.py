"""Incidents: their records, timeline, roles and the flows that run their chat side effects.

Importing the package tells the ledger how to name (and check) a run's incident: the ledger
itself knows a run's subject only as an opaque id (:mod:`incidentbot.ledger.subjects`).
"""

from incidentbot.incidents import subjects as _subjects  # noqa: F401
