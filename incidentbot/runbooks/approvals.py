"""Approve or reject a runbook run, from a Slack button or the CLI.

Each person's decision is a row (one per person and run), recorded with a timeline entry in
the same transaction. A rejection by anyone allowed to approve ends the wait at once; approvals
end it when enough distinct people (one, or two for ``two-person``) have approved. The run row
is locked while deciding, so two approvers clicking at the same moment are counted one after
the other, and a second click by the same person changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlmodel import select

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger import control
from incidentbot.ledger import service as ledger
from incidentbot.ledger.models import PARKED
from incidentbot.runbooks import access, planning
from incidentbot.runbooks.models import RunbookApproval, RunbookRun

if TYPE_CHECKING:
    from incidentbot.config import Settings
    from incidentbot.ports import Chat

DECISIONS = ("approved", "rejected")


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    message: str
    # The people the message names by their stored identity: each door shows them its way.
    people: tuple[str, ...] = ()


def decide(
    db_engine: Engine,
    settings: Settings,
    run_id: int,
    user: str,
    decision: str,
    *,
    chat: Chat | None = None,
) -> Outcome:
    """Record ``user``'s decision on run ``run_id``; the outcome says what happened."""
    if decision not in DECISIONS:
        raise DomainError(f"unknown decision {decision!r}: approve or reject")
    with db.transaction(db_engine) as s:
        row = s.exec(
            select(RunbookRun).where(RunbookRun.run_id == run_id).with_for_update()
        ).first()
        if row is None:
            raise DomainError(f"run {run_id} is not a runbook run")
        run = ledger.get_run(s, run_id, with_spec=False)
        steps = ledger.get_steps(s, run_id)
        gate = next((st for st in steps if st.action == planning.APPROVAL_ACTION), None)
        name = f"{row.runbook} (run {run_id})"
        if gate is None:
            return Outcome(False, f"{name} does not need an approval")
        if gate.decision is not None:
            by = gate.decided_by or "someone"
            when = f"{gate.decided_at:%H:%M:%S} UTC" if gate.decided_at else ""
            message = f"{name} was already {gate.decision} by {by} {when}".strip()
            return Outcome(False, message, tuple(by.split(", ")))
        if run.status in ("succeeded", "failed", "cancelled"):
            return Outcome(False, f"{name} is {run.status}: there is nothing to approve")
        incident = s.get(Incident, row.incident_id) if row.incident_id else None
        try:
            access.check_may_approve(
                settings.runbooks,
                row.runbook,
                user,
                requester=row.requester,
                incident=incident,
                chat=chat,
            )
        except DomainError as exc:
            text = f"{str(exc)[:1].upper()}{str(exc)[1:]}. Nothing changed."
            return Outcome(False, text, exc.people)
        if run.status != PARKED or run.cursor != gate.idx:
            return Outcome(False, f"{name} is not waiting for approval yet; try again")
        if run.wake_at is not None and run.wake_at <= db.db_now(s):
            return Outcome(
                False, f"the approval request for {name} expired at {run.wake_at:%H:%M:%S} UTC"
            )
        earlier = s.exec(
            select(RunbookApproval).where(
                RunbookApproval.runbook_run_id == row.id, RunbookApproval.user == user
            )
        ).first()
        if earlier is not None:
            return Outcome(
                False,
                f"You already {earlier.decision} {name} at {earlier.at:%H:%M:%S} UTC; "
                "nothing changed",
            )
        now = utcnow()
        s.add(RunbookApproval(runbook_run_id=row.id, user=user, decision=decision, at=now))
        s.flush()
        approved = [
            a.user
            for a in s.exec(
                select(RunbookApproval).where(
                    RunbookApproval.runbook_run_id == row.id,
                    RunbookApproval.decision == "approved",
                )
            ).all()
        ]
        if decision == "rejected":
            result = control.decide(s, run_id, "rejected", by=user, step=gate.idx)
            summary = f"{user} rejected runbook {name}"
        elif len(approved) >= row.approvals_needed:
            by = ", ".join(approved)
            result = control.decide(s, run_id, "approved", by=by, step=gate.idx)
            summary = f"{user} approved runbook {name}: it runs now"
        else:
            result = None
            summary = (
                f"{user} approved runbook {name} "
                f"({len(approved)} of {row.approvals_needed} approvals)"
            )
        if result is not None and not result.accepted:
            raise DomainError(result.message)  # rolls the approval row back too
        if incident is not None:
            svc.record(
                s,
                incident,
                "runbook.approval",
                user,
                summary,
                now=now,
                data={
                    "run_id": run_id,
                    "runbook": row.runbook,
                    "decision": decision,
                    "people": [user],
                },
            )
        return Outcome(True, summary, (user,))
