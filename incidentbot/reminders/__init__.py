"""Reminders: status updates on cadence, stale incidents, postmortems due, overdue action items."""
