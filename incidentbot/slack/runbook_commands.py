"""``/incident run``, ``/incident runs``, the run buttons and the params form.

Plain Python like :mod:`incidentbot.slack.commands`: the Bolt listeners hand over what Slack
sent and acknowledge with what comes back. Starting a run, approving it, resuming it: each is
one transaction (the ledger run, the runbook record and the timeline entry together).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    InputBlock,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.chat_text import mrkdwn
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger import control
from incidentbot.ledger.service import LockHeld
from incidentbot.runbooks import access, approvals, engine, expr, planning, recovery, run_context
from incidentbot.runbooks import view as views
from incidentbot.runbooks.actions import Services
from incidentbot.runbooks.definition import Runbook, format_seconds
from incidentbot.runbooks.loader import Catalog
from incidentbot.runbooks.params import ParamError, coerce, describe
from incidentbot.slack import runbook_blocks as rb_blocks
from incidentbot.slack.blocks import user_ref

log = logging.getLogger(__name__)

FORM_CALLBACK = "runbook_params"
MAX_FORM_PARAMS = 40
# Planning runs before the ack (the plan is the answer), so its expressions share this much
# time; each operation in them is bounded by size, so the deadline is met to within
# milliseconds (see incidentbot.runbooks.expr_limits).
PLAN_EXPRESSION_SECONDS = 0.5


@dataclass
class RunReply:
    text: str
    blocks: list[dict[str, Any]] | None = None
    in_channel: bool = False
    open_modal: bool = False
    modal_args: dict[str, Any] | None = None


class RunbookCommands:
    def __init__(
        self, settings: Settings, db_engine: Engine, catalog: Callable[[], Catalog], chat: Any
    ):
        self.settings = settings
        self.engine = db_engine
        self.catalog = catalog
        self.chat = chat

    # -- /incident run ---------------------------------------------------------------------------

    def _runbook(self, name: str) -> Runbook:
        catalog = self.catalog()
        runbook = catalog.get(name)
        if runbook is not None:
            return runbook
        bad = [p for p in catalog.problems if _mentions(p, name)]
        if bad:
            raise DomainError(
                f"runbook {name} is not loaded because it is invalid: "
                + "; ".join(str(p) for p in bad[:3])
            )
        known = ", ".join(catalog.names()) or "none are installed"
        raise DomainError(f"there is no runbook {name} (runbooks: {known})")

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
    ) -> RunReply:
        runbook = self._runbook(runbook_name)
        if not plan_only and incident is None:
            raise DomainError(
                f"run {runbook.name} from an incident's channel: runs act for an incident "
                f"(`/incident run plan {runbook.name} …` works anywhere)"
            )
        wants_form = not plan_only and not params and runbook.params and not from_form
        if wants_form and len(runbook.params) <= MAX_FORM_PARAMS:
            return RunReply(
                f"Opening the form for {runbook.name}…",
                open_modal=True,
                modal_args={"runbook": runbook.name},
            )
        with db.transaction(self.engine) as s:
            info = run_context.incident_info(s, incident)
        try:
            with expr.time_budget(PLAN_EXPRESSION_SECONDS, "expressions while Slack waits"):
                plan = planning.plan(
                    runbook,
                    params,
                    incident=info,
                    requester=user,
                    variables=self.settings.runbooks.vars,
                    services=Services(engine=self.engine, settings=self.settings, chat=self.chat),
                )
        except ParamError as exc:
            return RunReply(_param_usage(runbook, exc))
        lines = planning.format_plan(plan)
        if plan_only:
            text, blocks = rb_blocks.plan_message(["Plan (nothing was run):", *lines])
            return RunReply(text, blocks)
        assert incident is not None
        access.check_may_run(
            self.settings.runbooks, runbook.name, user, incident=incident, chat=self.chat
        )
        access.check_approvable(
            self.settings.runbooks,
            runbook.name,
            needed=plan.approvals_needed,
            approval=plan.approval,
            requester=user,
            incident=incident,
        )
        try:
            with db.transaction(self.engine) as s:
                row = engine.start(
                    s,
                    self.settings,
                    plan,
                    key=key,
                    requester=user,
                    incident=svc.get(s, incident.ref),
                    source="slack",
                    channel_id=incident.channel_id,
                )
                run_id = row.run_id
        except LockHeld as exc:
            raise DomainError(str(exc)) from None
        waits = (
            f"; it waits for approval by {_approvers_text(plan.approvals_needed)}"
            if plan.approvals_needed
            else ""
        )
        return RunReply(f"Started {runbook.name} as run {run_id}{waits}. Follow it below.")

    def runs(self, incident: Incident | None) -> RunReply:
        with db.transaction(self.engine) as s:
            rows = views.runs_of(s, incident.id if incident else None, limit=15)
            shown = [views.load(s, r.run_id) for r in rows]
        where = f"{incident.ref} runbook runs" if incident else "Recent runbook runs"
        if not shown:
            return RunReply(f"{where}: none yet. Start one with `/incident run <runbook>`.")
        lines = []
        for v in shown:
            done = sum(1 for st in v.steps if st.status in ("done", "skipped"))
            title = rb_blocks.RUN_TITLE.get(v.status, v.status)
            lines.append(
                f"• run {v.run_id} `{v.runbook}` · {title} · {done}/{len(v.steps)} steps · "
                f"by {user_ref(v.requester)} · {format_seconds(round(v.elapsed))}"
                + (f" · {v.incident_ref}" if v.incident_ref and incident is None else "")
            )
        return RunReply(f"*{where}*\n" + "\n".join(lines))

    # -- buttons -----------------------------------------------------------------------------

    def button(self, action_id: str, run_id: int, user: str) -> str:
        """A click on a run message's button; returns what to tell the clicker (only them)."""
        if action_id in (rb_blocks.APPROVE, rb_blocks.REJECT):
            decision = "approved" if action_id == rb_blocks.APPROVE else "rejected"
            outcome = approvals.decide(
                self.engine, self.settings, run_id, user, decision, chat=self.chat
            )
            return outcome.message if outcome.accepted else f":no_entry: {outcome.message}"
        with db.transaction(self.engine) as s:
            row, _ = engine.load(s, run_id)
            incident = s.get(Incident, row.incident_id) if row.incident_id else None
        try:
            self._check_may_steer(row.runbook, user, row.requester, incident, action_id)
            who = user  # the run's record keeps the user id; messages show it as a mention
            with db.transaction(self.engine) as s:
                if action_id in (rb_blocks.CANCEL, rb_blocks.ABORT):
                    message = control.cancel(s, run_id, actor=who, reason="in Slack")
                elif action_id == rb_blocks.RESUME:
                    message = recovery.resume(s, run_id, actor=who)
                elif action_id == rb_blocks.SKIP:
                    message = recovery.resume(s, run_id, actor=who, skip=True)
                else:
                    raise DomainError(f"unknown button {action_id}")
        except DomainError as exc:
            text = str(exc)
            return f":no_entry: {text[:1].upper()}{text[1:]}. Nothing changed."
        return message

    def _check_may_steer(
        self,
        runbook: str,
        user: str,
        requester: str,
        incident: Incident | None,
        action_id: str,
    ) -> None:
        """Cancel: the requester, the commander or an approver. Resume/skip/abort a run that
        needs attention: the commander or an approver (someone who owns the decision)."""
        if action_id == rb_blocks.CANCEL and user == requester:
            return
        try:
            access.check_may_approve(
                self.settings.runbooks,
                runbook,
                user,
                requester="",
                incident=incident,
                chat=self.chat,
            )
        except DomainError as exc:
            what = {
                rb_blocks.CANCEL: "cancel",
                rb_blocks.ABORT: "abort",
                rb_blocks.RESUME: "resume",
                rb_blocks.SKIP: "skip a step of",
            }[action_id]
            reason = str(exc).replace("may approve runs of", f"may {what} runs of")
            raise DomainError(reason) from None

    # -- the params form ---------------------------------------------------------------------

    def form(self, runbook_name: str, channel_id: str) -> dict[str, Any]:
        runbook = self._runbook(runbook_name)
        blocks: list[Any] = []
        if runbook.description:
            blocks.append(SectionBlock(text=mrkdwn(runbook.description)[:2900]))
        for name, param in runbook.params.items():
            hint = param.description or name
            if param.secret:
                hint += " (secret: masked everywhere once submitted)"
            initial = (
                None if param.secret or param.default is None else param.format_value(param.default)
            )
            element: Any
            if param.type in ("enum", "bool"):
                choices = param.values if param.type == "enum" else ["true", "false"]
                options = [Option(value=v, text=v[:75]) for v in (choices or [])]
                chosen = next((o for o in options if o.value == initial), None)
                element = StaticSelectElement(
                    action_id="value", options=options, initial_option=chosen
                )
            elif param.type == "int":
                element = NumberInputElement(
                    action_id="value",
                    is_decimal_allowed=False,
                    initial_value=initial,
                    min_value=str(param.min) if param.min is not None else None,
                    max_value=str(param.max) if param.max is not None else None,
                )
            else:
                placeholder = "e.g. 30s, 5m, 1h" if param.type == "duration" else None
                element = PlainTextInputElement(
                    action_id="value", initial_value=initial, placeholder=placeholder
                )
            blocks.append(
                InputBlock(
                    block_id=f"param_{name}",
                    label=name[:2000],
                    hint=hint[:2000],
                    optional=not param.required,
                    element=element,
                )
            )
        view = View(
            type="modal",
            callback_id=FORM_CALLBACK,
            title=PlainTextObject(text="Run a runbook"),
            submit=PlainTextObject(text="Start"),
            close=PlainTextObject(text="Cancel"),
            private_metadata=json.dumps({"runbook": runbook.name, "channel": channel_id}),
            blocks=[SectionBlock(text=f"*{runbook.name}*"), *blocks],
        )
        view.validate_json()
        return view.to_dict()

    def submit_form(
        self, user: str, view: dict[str, Any]
    ) -> tuple[dict[str, str] | None, RunReply | None, str]:
        """(per-field errors, reply, channel) for a submitted form."""
        meta = json.loads(view.get("private_metadata") or "{}")
        channel = meta.get("channel", "")
        values = view.get("state", {}).get("values", {})
        params: dict[str, Any] = {}
        for block, content in values.items():
            if not block.startswith("param_"):
                continue
            element = content.get("value") or {}
            value = element.get("value")
            option = element.get("selected_option")
            if option:
                value = option.get("value")
            if value not in (None, ""):
                params[block.removeprefix("param_")] = value
        with db.transaction(self.engine) as s:
            incident = svc.get_by_channel(s, channel)
        runbook = self._runbook(meta.get("runbook", ""))
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


def _mentions(problem: Any, name: str) -> bool:
    return name in str(problem.file) or f"'{name}'" in problem.message


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
