"""Imports every table module so that ``SQLModel.metadata`` knows the whole schema."""

from incidentbot.incidents.models import (  # noqa: F401
    ActionItem,
    Counter,
    Incident,
    RoleAssignment,
    TimelineEvent,
)
from incidentbot.ledger.models import Run, Step, TargetLock  # noqa: F401
