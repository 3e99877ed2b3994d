"""Action items: the follow-ups an incident leaves behind, their owners, due dates and status.

:mod:`.service` holds the rules (add, assign, done, won't do, reopen, overdue, the report),
:mod:`.due` reads the due dates people type, :mod:`.github` opens an item as a GitHub issue.
"""
