"""The ledger actions a runbook run is made of: ``runbook.step``, ``runbook.approval`` and
``runbook.announce``.

``runbook.step`` reads the run's stored definition and params, evaluates the step's ``when``
and ``with`` against the params, the incident and the outputs earlier steps stored, runs the
action (polling it for ``wait_until``), and returns the outputs with every secret masked.
Failures keep their kind (retry, outcome unknown, permanent) so the ledger treats them as it
would the action's own, but their messages are masked first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import select

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.ledger import memory
from incidentbot.ledger.actions import (
    ActionRegistry,
    NeedsAttentionError,
    NotStartedError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
    StepContext,
    classify,
)
from incidentbot.runbooks import (
    engine,
    expr,
    keyguard,
    planning,
    recovery,
    run_context,
    step_reads,
)
from incidentbot.runbooks.actions import ActionContext, Services, registry
from incidentbot.runbooks.actions.base import Action
from incidentbot.runbooks.definition import RollbackStep, format_seconds
from incidentbot.runbooks.models import RunbookApproval, RunbookRun

if TYPE_CHECKING:
    from incidentbot.config import Settings
    from incidentbot.ports import Chat

log = logging.getLogger(__name__)


class Announcer(Protocol):
    """Posts (or updates) a run's message; ``recover``: look for one an earlier attempt may
    have posted without recording it."""

    def __call__(self, run_id: int, *, recover: bool = ...) -> dict[str, Any]: ...


class RunbookActions:
    """Binds the runbook ledger actions to the database, settings and (optionally) chat."""

    def __init__(
        self,
        engine_: Engine,
        settings: Settings,
        *,
        chat: Chat | None = None,
        announce: Announcer | None = None,
        progress: Callable[[int, str, str], None] | None = None,
    ):
        self.engine = engine_
        self.settings = settings
        self.chat = chat
        self.announcer = announce
        self.progress_sink = progress
        self.services = Services(engine=engine_, settings=settings, chat=chat)

    def install(self, actions: ActionRegistry) -> None:
        # What a step reads is read in the transaction that marks it started.
        prepare = self.prepare_step
        actions.register(planning.STEP_ACTION, self.step, replace=True, prepare=prepare)
        if self.chat is not None:  # steps whose action posts to Slack
            actions.register(planning.CHAT_STEP_ACTION, self.step, replace=True, prepare=prepare)
        actions.register(planning.APPROVAL_ACTION, self.approval, idempotent=True, replace=True)
        if self.announcer is not None:  # only a process with Slack posts the run message
            actions.register(planning.ANNOUNCE_ACTION, self.announce, idempotent=True, replace=True)

    # -- announce / approval -----------------------------------------------------------------

    def announce(self, ctx: StepContext, _data: dict[str, Any]) -> dict[str, Any]:
        assert self.announcer is not None
        return self.announcer(ctx.run_id, recover=ctx.attempt > 1)

    def approval(self, ctx: StepContext, _data: dict[str, Any]) -> dict[str, Any]:
        decision = ctx.decision
        if decision is None:
            raise PermanentError("the approval step ran without a decision")
        with db.transaction(self.engine) as s:
            row, _ = engine.load(s, ctx.run_id)
            approvals = s.exec(
                select(RunbookApproval)
                .where(RunbookApproval.runbook_run_id == row.id)
                .order_by(RunbookApproval.at)  # type: ignore[arg-type]
            ).all()
        if decision.outcome == "approved":
            return {"approved_by": [a.user for a in approvals if a.decision == "approved"]}
        if decision.expired:
            wait = format_seconds(self.settings.runbooks.approval_timeout.total_seconds())
            raise PermanentError(f"not approved: the approval request expired after {wait}")
        raise PermanentError(f"not approved: {decision.outcome} by {decision.by}")

    # -- steps -------------------------------------------------------------------------------

    def prepare_step(self, session: Any, ctx: StepContext, data: dict[str, Any]) -> Any:
        return step_reads.read(session, ctx.run_id, str(data.get("step", "")))

    def step(self, ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
        step_id = str(data.get("step", ""))
        reads = ctx.prepared
        if not isinstance(reads, step_reads.StepReads):  # not run by a worker: read it now
            with db.read(self.engine) as s:
                reads = step_reads.read(s, ctx.run_id, step_id)
        runbook = reads.runbook
        if reads.shape is None:
            raise PermanentError(f"runbook {runbook.name} has no step {step_id!r}")
        step = reads.shape.step
        mask = run_context.run_masker(runbook, reads.params)
        # Rollback and clean-up steps run after the deadline too: they put things back.
        if runbook.timeout and not reads.shape.is_rollback and not reads.shape.is_cleanup:
            deadline = reads.started + timedelta(seconds=runbook.timeout)
            if utcnow() > deadline:
                raise NotStartedError(
                    f"the runbook's timeout of {format_seconds(runbook.timeout)} passed "
                    f"before step {step.id}"
                )
        info = reads.incident
        variables = run_context.context(
            runbook,
            reads.params,
            incident=info,
            run_id=ctx.run_id,
            requester=reads.requester,
            steps=reads.states,
            variables=self.settings.runbooks.vars if self.settings is not None else None,
        )
        action = registry.get(step.uses)
        if action is None:
            raise RetryableError(
                f"this worker has no action {step.uses!r}; waiting for one that has"
            )
        try:
            if reads.states is not None:
                recovery.fill_skipped(runbook, variables)
            if step.when is not None and not expr.condition(step.when, variables):
                return {"skipped": True, "reason": f"when: {step.when} is false"}
            rendered = expr.render(step.with_, variables)
        except expr.ExpressionError as exc:
            raise NotStartedError(mask(str(exc))) from None
        try:
            inputs = action.validate(rendered)
        except ValidationError as exc:
            raise PermanentError(
                mask(f"inputs of {step.uses} do not fit: {planning.validation_message(exc)}")
            ) from None
        actx = ActionContext(
            run_id=ctx.run_id,
            step_id=step.id,
            attempt=ctx.attempt,
            incident=info,
            target=ctx.target,
            requester=reads.requester,
            services=self.services,
            idempotency_token=ctx.idempotency_token,
            stop_event=ctx.stop_event,
            mask=mask,
            progress=lambda line: self._progress(ctx.run_id, step.id, mask(line)),
        )
        effect = keyguard.effect_of(action)
        if effect is not None:  # the double-sign interlock, in its own commit before the effect
            with db.transaction(self.engine) as s:
                keyguard.admit(s, ctx.run_id, ctx.step_index, ctx.attempt, action, inputs, step.id)
        try:
            actx.remembered = self._remember(ctx, action, inputs, actx)
            if step.wait_until is not None:
                outputs = self._wait(action, inputs, actx, step, variables)
            else:
                outputs = action.run(inputs, actx) or {}
        except Exception as exc:
            if effect == keyguard.VERIFIES and classify(exc).kind == "permanent":
                raise NeedsAttentionError(mask(keyguard.unverified(step.id, str(exc)))) from None
            raise _masked(exc, mask) from None
        return run_context.mask_value(outputs, mask)

    def _remember(
        self, ctx: StepContext, action: Any, inputs: Any, actx: ActionContext
    ) -> dict[str, Any] | None:
        """What the action read before the step's first attempt: kept in the ledger (in its
        own commit, before the side effect), so a retry after a crash finds the original."""
        if type(action).remember is Action.remember:
            return None
        with db.transaction(self.engine) as s:
            kept = memory.recall(s, ctx.run_id, ctx.step_index)
        if kept is not None:
            return kept
        read = action.remember(inputs, actx)
        if read is None:
            return None
        with db.transaction(self.engine) as s:
            return memory.keep(s, ctx.run_id, ctx.step_index, ctx.attempt, read)

    def _wait(
        self,
        action: Any,
        inputs: Any,
        actx: ActionContext,
        step: RollbackStep,
        variables: dict[str, Any],
    ) -> dict[str, Any]:
        """Run the action every ``interval`` until the check holds; errors that retrying can
        fix (a node still restarting refuses connections) count as "not yet"."""
        assert step.wait_until is not None
        until = step.wait_until
        deadline = time.monotonic() + until.timeout
        polls = 0
        last: str = "no answer yet"
        while True:
            polls += 1
            try:
                outputs = action.run(inputs, actx) or {}
                if expr.condition(until.check, {**variables, "outputs": outputs}):
                    return {**outputs, "polls": polls}
                last = "last outputs " + _brief(run_context.mask_value(outputs, actx.mask))
            except expr.ExpressionError as exc:
                raise PermanentError(actx.mask(str(exc))) from None
            except Exception as exc:
                verdict = classify(exc)
                if verdict.kind in ("permanent", "attention"):
                    raise
                last = f"last error {actx.mask(verdict.message)}"
            if polls == 1 or polls % 10 == 0:
                actx.progress(f"waiting until {until.check} ({polls} checks so far)")
            if time.monotonic() + until.interval > deadline:
                raise PermanentError(
                    f"{until.check} still false after {format_seconds(until.timeout)} "
                    f"({polls} checks; {last})"
                )
            if actx.wait(until.interval):
                raise RetryableError("stopped while waiting")

    def _progress(self, run_id: int, step_id: str, line: str) -> None:
        log.info("run %s step %s: %s", run_id, step_id, line)
        if self.progress_sink is not None:
            self.progress_sink(run_id, step_id, line)


def _brief(value: Any, limit: int = 300) -> str:
    """Outputs in a message: compact JSON, cut at ``limit`` characters."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _masked(exc: BaseException, mask: Callable[[str], str]) -> Exception:
    """The same verdict as ``exc``, with the run's secrets masked out of its message."""
    if isinstance(exc, RetryableError):
        return RetryableError(mask(str(exc)), exc.retry_after)
    if isinstance(exc, OutcomeUnknownError | PermanentError | NeedsAttentionError):
        return type(exc)(mask(str(exc)))
    verdict = classify(exc)
    message = mask(verdict.message)
    if verdict.kind == "retry":
        return RetryableError(message, verdict.retry_after)
    if verdict.kind == "unknown":
        return OutcomeUnknownError(message)
    return PermanentError(message)


def approvals_of(session: Any, row: RunbookRun) -> list[RunbookApproval]:
    return list(
        session.exec(
            select(RunbookApproval)
            .where(RunbookApproval.runbook_run_id == row.id)
            .order_by(RunbookApproval.at)  # type: ignore[arg-type]
        ).all()
    )
