"""Imports every table module so that ``SQLModel.metadata`` knows the whole schema."""

from incidentbot.incidents.models import (  # noqa: F401
    ActionItem,
    Counter,
    Incident,
    RoleAssignment,
    TimelineEvent,
)
