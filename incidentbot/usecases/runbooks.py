"""Runbook runs: plan, run, approve, reject, cancel (and abort), resume (and skip).

Every door calls these: ``/incident run`` and the run message's buttons in Slack,
``incidentbot runbook plan|run|approve|resume`` and ``incidentbot runs cancel|decide`` in the
CLI. The access rules (:mod:`incidentbot.runbooks.access`) apply to all of them; the actor's id
is what the rules name (a Slack user id, or the CLI's ``--as``/login name).

``chat`` is lent by a door that has one (Slack) for what the rules ask of it: the members of
the incident's channel and of user groups. Without it, groups admit nobody and channel
membership cannot be checked: a CLI actor counts as working from a terminal
(``where="terminal"`` in the access rules).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from incidentbot import db
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger import control
from incidentbot.ledger import service as ledger
from incidentbot.ledger.service import LockHeld
from incidentbot.runbooks import access, approvals, engine, expr, planning, recovery, run_context
from incidentbot.runbooks.actions import Services
from incidentbot.runbooks.definition import Runbook
from incidentbot.usecases.core import Actor, Core

if TYPE_CHECKING:
    from incidentbot.ports import Chat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    """What a run would do. ``lines`` are plain text (params masked as the plan shows them)."""

    runbook: str
    lines: tuple[str, ...]
    problems: tuple[str, ...]
    approvals_needed: int


@dataclass(frozen=True)
class Started:
    run_id: int
    runbook: str
    incident_ref: str | None
    approvals_needed: int  # 0: it runs now; 1: the commander; 2: two people


@dataclass(frozen=True)
class Decided:
    """An approval or a rejection that counted. ``summary`` is the timeline's sentence."""

    run_id: int
    decision: str
    summary: str
    # The people ``summary`` names by their stored identity: each door shows them its way.
    people: tuple[str, ...] = ()


@dataclass(frozen=True)
class Steered:
    """A cancel, abort, resume or skip that was accepted; ``message`` says what happens now."""

    run_id: int
    message: str


def runbook(core: Core, name: str) -> Runbook:
    """The loaded runbook ``name``, or a refusal saying why it is not there."""
    if core.catalog is None:
        raise DomainError("runbooks are not available here")
    catalog = core.catalog()
    found = catalog.get(name)
    if found is not None:
        return found
    bad = [p for p in catalog.problems if name in str(p.file) or f"'{name}'" in p.message]
    if bad:
        raise DomainError(
            f"runbook {name} is not loaded because it is invalid: "
            + "; ".join(str(p) for p in bad[:3])
        )
    known = ", ".join(catalog.names()) or "none are installed"
    raise DomainError(f"there is no runbook {name} (runbooks: {known})")


def _plan(
    core: Core,
    actor: Actor,
    name: str,
    params: dict[str, Any],
    incident: Incident | None,
    chat: Chat | None,
    budget: float | None,
) -> planning.Plan:
    book = runbook(core, name)
    info = None
    if incident is not None:  # without one, a plan reads nothing from the database
        with db.transaction(core.engine) as s:
            info = run_context.incident_info(s, incident)
    limit = (
        expr.time_budget(budget, "expressions while Slack waits")
        if budget is not None
        else nullcontext()
    )
    with limit:
        return planning.plan(
            book,
            params,
            incident=info,
            requester=actor.id,
            variables=core.settings.runbooks.vars,
            services=Services(engine=core.engine, settings=core.settings, chat=chat),
        )


def _incident(core: Core, ref: str | None) -> Incident | None:
    if ref is None:
        return None
    with db.transaction(core.engine) as s:
        return svc.get(s, ref)


def plan(
    core: Core,
    actor: Actor,
    name: str,
    params: dict[str, Any],
    *,
    incident_ref: str | None = None,
    chat: Chat | None = None,
    budget: float | None = None,
) -> Planned:
    """Say what a run of ``name`` would do, touching nothing. Raises ParamError (with each
    param's problem) for params that do not fit. ``budget`` bounds the time all the plan's
    expressions may take together (a door that answers within a deadline sets it). Without an
    incident nothing is read from the database."""
    p = _plan(core, actor, name, params, _incident(core, incident_ref), chat, budget)
    return Planned(
        runbook=p.runbook.name,
        lines=tuple(planning.format_plan(p)),
        problems=tuple(p.problems),
        approvals_needed=p.approvals_needed,
    )


def run(
    core: Core,
    actor: Actor,
    name: str,
    params: dict[str, Any],
    *,
    incident_ref: str | None,
    key: str,
    chat: Chat | None = None,
    budget: float | None = None,
    post_in_channel: bool = True,
) -> Started:
    """Plan the run, check who may run it and that someone could approve it, and start it:
    the ledger run, the runbook record and the timeline entry in one transaction. The same
    ``key`` starts the same run once.

    ``post_in_channel``: the run's message goes to the incident's channel (a step only a
    process with chat runs; the CLI, which follows the run itself, starts runs without it)."""
    incident = _incident(core, incident_ref)
    p = _plan(core, actor, name, params, incident, chat, budget)
    rules = core.settings.runbooks
    # Channel membership means something in a chat; a terminal has none (see runbooks.access).
    where: access.Where = "terminal" if actor.door == "cli" else "chat"
    access.check_may_run(rules, p.runbook.name, actor.id, incident=incident, chat=chat, where=where)
    access.check_approvable(
        rules,
        p.runbook.name,
        needed=p.approvals_needed,
        approval=p.approval,
        requester=actor.id,
        incident=incident,
    )
    channel = incident.channel_id if incident is not None and post_in_channel else None
    try:
        with db.transaction(core.engine) as s:
            row = engine.start(
                s,
                core.settings,
                p,
                key=key,
                requester=actor.id,
                incident=svc.get(s, incident.ref) if incident is not None else None,
                source=actor.door,
                channel_id=channel or None,
            )
            run_id = row.run_id
    except LockHeld as exc:
        raise DomainError(str(exc)) from None
    log.info("runbook %s started as run %s by %s", p.runbook.name, run_id, actor.id)
    return Started(
        run_id=run_id,
        runbook=p.runbook.name,
        incident_ref=incident.ref if incident is not None else None,
        approvals_needed=p.approvals_needed,
    )


def _decide(core: Core, actor: Actor, run_id: int, decision: str, chat: Chat | None) -> Decided:
    outcome = approvals.decide(core.engine, core.settings, run_id, actor.id, decision, chat=chat)
    if not outcome.accepted:
        raise DomainError(outcome.message, people=outcome.people)
    return Decided(run_id=run_id, decision=decision, summary=outcome.message, people=outcome.people)


def approve(core: Core, actor: Actor, run_id: int, *, chat: Chat | None = None) -> Decided:
    """Approve a run that waits for approval (refused for its requester and for anyone the
    rules do not name; a second approval by the same person changes nothing)."""
    return _decide(core, actor, run_id, "approved", chat)


def reject(core: Core, actor: Actor, run_id: int, *, chat: Chat | None = None) -> Decided:
    """Reject a run that waits for approval: it ends at once and its target is free."""
    return _decide(core, actor, run_id, "rejected", chat)


def _check_may_steer(
    core: Core, actor: Actor, run_id: int, what: access.Steer, chat: Chat | None
) -> bool:
    """Apply the runbook rules to steering run ``run_id``; False when it is not a runbook run
    (other durable work, which only the CLI steers, has no rules of its own)."""
    with db.transaction(core.engine) as s:
        ledger.get_run(s, run_id, with_spec=False)  # "no run N" for a run that does not exist
        try:
            row, _ = engine.load(s, run_id)
        except DomainError:
            return False
        incident = s.get(Incident, row.incident_id) if row.incident_id else None
    access.check_may_steer(
        core.settings.runbooks,
        row.runbook,
        actor.id,
        what,
        requester=row.requester,
        incident=incident,
        chat=chat,
    )
    return True


def cancel(
    core: Core,
    actor: Actor,
    run_id: int,
    *,
    reason: str = "",
    abort: bool = False,
    chat: Chat | None = None,
) -> Steered:
    """Stop a run before its next step and release its target. ``abort`` is the same for a
    run that needs attention (its rollback steps run first), asked by whoever owns that
    decision: the requester may cancel their own run, not abort it."""
    _check_may_steer(core, actor, run_id, "abort" if abort else "cancel", chat)
    with db.transaction(core.engine) as s:
        message = control.cancel(s, run_id, actor=actor.id, reason=reason)
    return Steered(run_id=run_id, message=message)


def resume(
    core: Core, actor: Actor, run_id: int, *, skip: bool = False, chat: Chat | None = None
) -> Steered:
    """Continue a run that needs attention: run the step in doubt again, or (``skip``) mark
    it done and go on; a skip that would leave later steps without the outputs they read is
    refused."""
    if not _check_may_steer(core, actor, run_id, "skip" if skip else "resume", chat):
        raise DomainError(f"run {run_id} is not a runbook run")
    with db.transaction(core.engine) as s:
        message = recovery.resume(s, run_id, actor=actor.id, skip=skip)
    return Steered(run_id=run_id, message=message)


def decide(
    core: Core,
    actor: Actor,
    run_id: int,
    decision: str,
    *,
    step: int | None = None,
    chat: Chat | None = None,
) -> Steered:
    """A decision for a parked run. A runbook run's only decision is its approval, so it goes
    through :func:`approve`/:func:`reject` and their rules; other durable work records the
    decision as given (``step``: only if the run waits at that 0-based step)."""
    with db.transaction(core.engine) as s:
        ledger.get_run(s, run_id, with_spec=False)
        try:
            engine.load(s, run_id)
            is_runbook = True
        except DomainError:
            is_runbook = False
    if is_runbook:
        word = decision.strip().lower()
        if word not in approvals.DECISIONS:
            raise DomainError(
                f"run {run_id} is a runbook run: its decision is approved or rejected, "
                f"not {decision!r}"
            )
        done = _decide(core, actor, run_id, word, chat)
        return Steered(run_id=run_id, message=done.summary)
    with db.transaction(core.engine) as s:
        result = control.decide(s, run_id, decision, by=actor.id, step=step)
    if not result.accepted:
        raise DomainError(result.message)
    return Steered(run_id=run_id, message=result.message)
