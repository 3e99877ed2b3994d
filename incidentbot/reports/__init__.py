"""Across incidents: response times by severity, by incident field and by month, runbook runs
and their outcomes, action items open and overdue (``incidentbot report``)."""
