"""Imports every table module so that ``SQLModel.metadata`` knows the whole schema."""

from incidentbot.alerts.models import AlertDelivery, AlertGroup, AlertRecord  # noqa: F401
from incidentbot.handoff.models import HandoffAck, HandoffNote, HandoffPost  # noqa: F401
from incidentbot.inbound import InboundRequest  # noqa: F401
from incidentbot.incidents.models import (  # noqa: F401
    ActionItem,
    Counter,
    Incident,
    RoleAssignment,
    TimelineEvent,
)
from incidentbot.incidents.standby import StandbyChannel  # noqa: F401
from incidentbot.installation import Installation  # noqa: F401
from incidentbot.ledger.models import Run, Step, TargetLock  # noqa: F401
from incidentbot.paging.models import Page  # noqa: F401
from incidentbot.people.models import Person  # noqa: F401
from incidentbot.postmortems.models import Postmortem  # noqa: F401
from incidentbot.reminders.models import Reminder  # noqa: F401
from incidentbot.runbooks.models import RunbookApproval, RunbookRun  # noqa: F401
from incidentbot.scheduler.models import SchedulerRun  # noqa: F401
