"""The report across incidents (``incidentbot report``): read only."""

from __future__ import annotations

from datetime import datetime

from incidentbot import db
from incidentbot.reports import stats
from incidentbot.usecases.core import Core


def report(
    core: Core, *, since: datetime | None = None, until: datetime | None = None
) -> stats.Report:
    with db.transaction(core.engine) as s:
        return stats.build(s, core.settings, since=since, until=until)
