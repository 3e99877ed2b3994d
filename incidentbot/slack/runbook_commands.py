"""``/incident run``, ``/incident runs``, the run buttons and the params form: the Slack door of
the runbook use cases (:mod:`incidentbot.usecases.runbooks`).

Plain Python like :mod:`incidentbot.slack.commands`: the Bolt listeners hand over what Slack
sent and acknowledge with what comes back. Each method parses, calls one use case and renders
its result (or its refusal) as a :class:`~incidentbot.slack.reply.Reply`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.chat_text import mention, mrkdwn, mrkdwn_refusal
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ports import Chat
from incidentbot.runbooks import view as views
from incidentbot.runbooks.definition import Runbook, format_seconds
from incidentbot.runbooks.loader import Catalog
from incidentbot.runbooks.params import ParamError, coerce, describe
from incidentbot.slack import runbook_blocks as rb_blocks
from incidentbot.slack.reply import Reply
from incidentbot.usecases import runbooks as uc
from incidentbot.usecases.core import Actor, Core

log = logging.getLogger(__name__)

FORM_CALLBACK = rb_blocks.FORM_CALLBACK
MAX_FORM_PARAMS = 40
# Planning runs before the ack (the plan is the answer), so its expressions share this much
# time; each operation in them is bounded by size, so the deadline is met to within
# milliseconds (see incidentbot.runbooks.expr_limits).
PLAN_EXPRESSION_SECONDS = 0.5

_STEER: dict[str, tuple[str, bool]] = {  # button → (use case, its flag)
    rb_blocks.CANCEL: ("cancel", False),
    rb_blocks.ABORT: ("cancel", True),
    rb_blocks.RESUME: ("resume", False),
    rb_blocks.SKIP: ("resume", True),
}


class RunbookCommands:
    def __init__(
        self,
        settings: Settings,
        db_engine: Engine,
        catalog: Callable[[], Catalog],
        chat: Chat | None,
    ):
        self.settings = settings
        self.engine = db_engine
        self.core = Core(settings, db_engine, catalog=catalog)
        self.chat = chat

    # -- /incident run ---------------------------------------------------------------------------

    def run(
        self,
        *,
        user: str,
        incident: Incident | None,
        runbook_name: str,
        params: dict[str, Any],
        plan_only: bool,
        key: str,
        from_form: bool = False,
    ) -> Reply:
        runbook = uc.runbook(self.core, runbook_name)
        if not plan_only and incident is None:
            raise DomainError(
                f"run {runbook.name} from an incident's channel: runs act for an incident "
                f"(`/incident run plan {runbook.name} …` works anywhere)"
            )
        wants_form = not plan_only and not params and runbook.params and not from_form
        if wants_form and len(runbook.params) <= MAX_FORM_PARAMS:
            return Reply(
                f"Opening the form for {runbook.name}…",
                open_modal=True,
                modal_args={"runbook": runbook.name},
            )
        actor = Actor(user, "slack")
        ref = incident.ref if incident is not None else None
        try:
            if plan_only:
                planned = uc.plan(
                    self.core,
                    actor,
                    runbook.name,
                    params,
                    incident_ref=ref,
                    chat=self.chat,
                    budget=PLAN_EXPRESSION_SECONDS,
                )
                text, blocks = rb_blocks.plan_message(["Plan (nothing was run):", *planned.lines])
                return Reply(text, blocks)
            started = uc.run(
                self.core,
                actor,
                runbook.name,
                params,
                incident_ref=ref,
                key=key,
                chat=self.chat,
                budget=PLAN_EXPRESSION_SECONDS,
            )
        except ParamError as exc:
            return Reply(_param_usage(runbook, exc))
        waits = (
            f"; it waits for approval by {_approvers_text(started.approvals_needed)}"
            if started.approvals_needed
            else ""
        )
        return Reply(f"Started {started.runbook} as run {started.run_id}{waits}. Follow it below.")

    def runs(self, incident: Incident | None) -> Reply:
        with db.transaction(self.engine) as s:
            rows = views.runs_of(s, incident.id if incident else None, limit=15)
            shown = [views.load(s, r.run_id) for r in rows]
        where = f"{incident.ref} runbook runs" if incident else "Recent runbook runs"
        if not shown:
            return Reply(f"{where}: none yet. Start one with `/incident run <runbook>`.")
        lines = []
        for v in shown:
            done = sum(1 for st in v.steps if st.status in ("done", "skipped"))
            title = rb_blocks.RUN_TITLE.get(v.status, v.status)
            lines.append(
                f"• run {v.run_id} `{v.runbook}` · {title} · {done}/{len(v.steps)} steps · "
                f"by {mention(v.requester)} · {format_seconds(round(v.elapsed))}"
                + (f" · {v.incident_ref}" if v.incident_ref and incident is None else "")
            )
        return Reply(f"*{where}*\n" + "\n".join(lines))

    # -- buttons -----------------------------------------------------------------------------

    def button(self, action_id: str, run_id: int, user: str) -> Reply:
        """A click on a run message's button; the reply is for the clicker only."""
        actor = Actor(user, "slack")
        if action_id in (rb_blocks.APPROVE, rb_blocks.REJECT):
            decide = uc.approve if action_id == rb_blocks.APPROVE else uc.reject
            try:
                done = decide(self.core, actor, run_id, chat=self.chat)
                return Reply(mrkdwn_refusal(done.summary, done.people, self._groups()))
            except DomainError as exc:
                return Reply(f":no_entry: {mrkdwn_refusal(str(exc), exc.people, self._groups())}")
        try:
            if action_id not in _STEER:
                raise DomainError(f"unknown button {action_id}")
            what, flag = _STEER[action_id]
            if what == "cancel":
                done = uc.cancel(
                    self.core, actor, run_id, reason="in Slack", abort=flag, chat=self.chat
                )
            else:
                done = uc.resume(self.core, actor, run_id, skip=flag, chat=self.chat)
        except DomainError as exc:
            text = mrkdwn_refusal(str(exc), exc.people, self._groups())
            return Reply(f":no_entry: {text[:1].upper()}{text[1:]}. Nothing changed.")
        return Reply(done.message)

    def _groups(self) -> set[str]:
        """The user groups of the access rules: a refusal names them as live group mentions."""
        rules = self.settings.runbooks.access
        return {g for r in rules for g in (*r.groups, *r.approver_groups)}

    # -- the params form ---------------------------------------------------------------------

    def form(self, runbook_name: str, channel_id: str) -> dict[str, Any]:
        return rb_blocks.params_form(uc.runbook(self.core, runbook_name), channel_id)

    def suggested_form(
        self, user: str, runbook_name: str, params: dict[str, str], channel_id: str
    ) -> dict[str, Any]:
        """The run form of a runbook an alert suggested: prefilled with the params taken from
        the alert's labels, showing the plan. Starting it is ``submit_form``, as for any form,
        so the same access rules and approvals apply. Raises DomainError (no such runbook,
        not allowed) with nothing opened."""
        runbook = uc.runbook(self.core, runbook_name)
        with db.transaction(self.engine) as s:
            incident = svc.get_by_channel(s, channel_id)
        try:
            planned = uc.plan(
                self.core,
                Actor(user, "slack"),
                runbook.name,
                params,
                incident_ref=incident.ref if incident is not None else None,
                chat=self.chat,
                budget=PLAN_EXPRESSION_SECONDS,
            )
            plan = list(planned.lines)
        except ParamError as exc:
            plan = ["No plan yet, the params need fixing:"]
            plan += [f"{name}: {message}" for name, message in exc.problems]
        return rb_blocks.params_form(runbook, channel_id, values=params, plan=plan)

    def submit_form(
        self, user: str, view: dict[str, Any]
    ) -> tuple[dict[str, str] | None, Reply | None, str]:
        """(per-field errors, reply, channel) for a submitted form."""
        name, channel, params = rb_blocks.form_values(view)
        with db.transaction(self.engine) as s:
            incident = svc.get_by_channel(s, channel)
        runbook = uc.runbook(self.core, name)
        first = f"param_{next(iter(runbook.params), '')}"
        try:
            coerce(runbook, params)
        except ParamError as exc:
            errors = {f"param_{n}": m[:150] for n, m in exc.problems if n in runbook.params}
            return errors or {first: str(exc)[:150]}, None, channel
        try:
            reply = self.run(
                user=user,
                incident=incident,
                runbook_name=runbook.name,
                params=params,
                plan_only=False,
                key=f"slack:view:{view.get('id')}",
                from_form=True,
            )
        except DomainError as exc:
            return {first: str(exc)[:150]}, None, channel
        return None, reply, channel


def _approvers_text(needed: int) -> str:
    return "two people" if needed == 2 else "the incident commander"


def _param_usage(runbook: Runbook, exc: ParamError) -> str:
    problems = "\n".join(f"• `{name}`: {mrkdwn(message)}" for name, message in exc.problems)
    params = "\n".join(f"• {mrkdwn(describe(n, p))}" for n, p in runbook.params.items())
    example = " ".join(f"{n}=…" for n, p in runbook.params.items() if p.required)
    return (
        f"Cannot run {runbook.name}:\n{problems}\n"
        f"Usage: /incident run [plan] {runbook.name} {example}".rstrip()
        + f"\nParams:\n{params}"
    )
