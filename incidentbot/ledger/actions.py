"""Step actions: the registry of callables a run's steps name, and how their failures count.

A run's snapshot names actions by string, so the code behind a name can be fixed and deployed
while runs are in flight. An action is ``fn(ctx, input) -> dict``: it gets a
:class:`StepContext` (who it runs for, which attempt, the decision if the step was parked) and
its input, and returns a JSON-able result. It says how a failure should be treated by what it
raises: :class:`RetryableError` (safe to try again, optionally after ``retry_after`` seconds),
:class:`OutcomeUnknownError` (the request went out and no answer came back), or anything else
(a permanent failure). :func:`classify` also understands ``httpx`` errors, so adapters built on
httpx get 429/5xx/timeouts right without extra code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from incidentbot.ledger.models import EXPIRED
from incidentbot.ledger.redact import redact_text
from incidentbot.ports import ExternalError


class RetryableError(Exception):
    """The attempt failed without effect; trying again later may succeed (429, 503, ...)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """The attempt failed and retrying cannot help (a 4xx validation error, a refusal)."""


class NotStartedError(PermanentError):
    """The step failed before doing anything (a deadline passed, its input did not render):
    the run fails, and the step's own rollback steps do not run (there is nothing to undo)."""


class OutcomeUnknownError(Exception):
    """The request may or may not have taken effect (sent, then no answer).

    Retried for idempotent steps; for others the run stops as ``needs_attention``.
    """


class NeedsAttentionError(Exception):
    """A person must look before anything else happens (a safety check refused to go on):
    the run stops as ``needs_attention`` at this step, whether or not the step is idempotent,
    keeping its lock; no retry and no rollback step runs on its own."""


@dataclass(frozen=True)
class Decision:
    """The outside decision a parked step waited for (``expired`` if nobody decided in time)."""

    outcome: str
    by: str
    at: datetime

    @property
    def expired(self) -> bool:
        return self.outcome == EXPIRED


@dataclass
class StepContext:
    run_id: int
    run_kind: str
    step_index: int
    step_name: str
    attempt: int
    incident_id: int | None
    target: str | None
    decision: Decision | None = None
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    # What the action's ``prepare`` read in the transaction that marked the step started.
    prepared: Any = field(default=None, repr=False)

    @property
    def idempotency_token(self) -> str:
        """The same on every attempt of this step: pass it to APIs that deduplicate."""
        return f"ledger-run-{self.run_id}-step-{self.step_index + 1}"

    def should_stop(self) -> bool:
        """True once the worker gave up on this attempt (timeout, lost lease, shutdown).

        Long actions that poll (wait for a node to sync) should check it and return early;
        whatever they do after it turns true is not recorded.
        """
        return self.stop_event.is_set()


ActionFn = Callable[[StepContext, dict[str, Any]], dict[str, Any] | None]
# Reads what an attempt needs inside the transaction that marks the step started (one commit
# fewer than reading it from the action); what it returns is ``StepContext.prepared``.
PrepareFn = Callable[[Any, StepContext, dict[str, Any]], Any]


@dataclass(frozen=True)
class ActionInfo:
    name: str
    fn: ActionFn
    idempotent: bool
    description: str
    prepare: PrepareFn | None = None


class ActionRegistry:
    """Action names to callables. Thread-safe; one default instance, :data:`registry`."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionInfo] = {}
        self._lock = threading.Lock()

    def register(
        self,
        name: str,
        fn: ActionFn,
        *,
        idempotent: bool = False,
        description: str = "",
        replace: bool = False,
        prepare: PrepareFn | None = None,
    ) -> ActionInfo:
        """Register ``fn`` as ``name``. ``idempotent`` is the default runs snapshot when a step
        does not say; re-registering a name needs ``replace=True`` (it is usually a mistake).
        ``prepare(session, ctx, input)``, if given, runs in the transaction that marks the step
        started: what it reads, and what it writes (a claim that must commit only while the
        worker holds the run, as that transaction is fenced by its lease), commit with the
        start. It reads, or writes with single statements: an exception it raises fails the
        attempt as the action's own would, and the start still commits."""
        info = ActionInfo(name, fn, idempotent, description or (fn.__doc__ or "").strip(), prepare)
        with self._lock:
            existing = self._actions.get(name)
            if existing is not None and existing.fn is not fn and not replace:
                raise ValueError(f"action {name!r} is already registered")
            self._actions[name] = info
        return info

    def action(
        self, name: str, *, idempotent: bool = False, description: str = ""
    ) -> Callable[[ActionFn], ActionFn]:
        def decorate(fn: ActionFn) -> ActionFn:
            self.register(name, fn, idempotent=idempotent, description=description)
            return fn

        return decorate

    def get(self, name: str) -> ActionInfo | None:
        with self._lock:
            return self._actions.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._actions)


registry = ActionRegistry()
action = registry.action


# -- failure classification --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    kind: Literal["retry", "unknown", "permanent", "attention"]
    message: str
    retry_after: float | None = None
    rollback: bool = True  # False: the step did nothing, so its rollback steps do not run


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    own = (RetryableError, PermanentError, OutcomeUnknownError, NeedsAttentionError)
    if isinstance(exc, own):  # incl. NotStarted
        return redact_text(text)  # the action's own words: the class adds nothing
    return redact_text(f"{type(exc).__name__}: {text}" if str(exc).strip() else text)


def classify(exc: BaseException) -> Verdict:
    """Decide whether a failed attempt may be retried, may have happened, or is final."""
    if isinstance(exc, RetryableError):
        return Verdict("retry", _describe(exc), exc.retry_after)
    if isinstance(exc, OutcomeUnknownError):
        return Verdict("unknown", _describe(exc))
    if isinstance(exc, NeedsAttentionError):
        return Verdict("attention", _describe(exc), rollback=False)
    if isinstance(exc, PermanentError):
        return Verdict("permanent", _describe(exc), rollback=not isinstance(exc, NotStartedError))
    if isinstance(exc, ExternalError):  # an adapter's own verdict (Slack, PagerDuty)
        kind = "retry" if exc.retryable else "permanent"
        return Verdict(kind, _describe(exc), exc.retry_after if exc.retryable else None)
    verdict = _classify_httpx(exc)
    if verdict is not None:
        return verdict
    if isinstance(exc, ConnectionRefusedError):
        return Verdict("retry", _describe(exc))
    if isinstance(exc, TimeoutError):
        return Verdict("unknown", _describe(exc))
    return Verdict("permanent", _describe(exc))


def _classify_httpx(exc: BaseException) -> Verdict | None:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency
        return None
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        code = response.status_code
        where = redact_text(str(exc.request.url.copy_with(query=None)))
        message = f"HTTP {code} {response.reason_phrase} from {exc.request.method} {where}"
        if code == 429 or code == 408 or code >= 500:
            after = parse_retry_after(response.headers.get("retry-after"))
            return Verdict("retry", message, after)
        return Verdict("permanent", message)
    # Never sent: safe to retry whatever the step does.
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Verdict("retry", _describe(exc))
    # Sent, no (complete) answer: the server may have acted on it.
    if isinstance(exc, httpx.TransportError):
        return Verdict("unknown", _describe(exc))
    return None


# -- built-in actions --------------------------------------------------------------------------


@action("ledger.noop", idempotent=True)
def _noop(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Does nothing; returns its input (tests, benchmarks, placeholders)."""
    return dict(data)


@action("ledger.approval", idempotent=True)
def _approval(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Gate for a parked step: continue only if the decision was ``approved``."""
    decision = ctx.decision
    if decision is None:
        raise PermanentError("ledger.approval needs a parked step (give the step a `park`)")
    if decision.outcome != "approved":
        who = "" if decision.expired else f" by {decision.by}"
        raise PermanentError(f"not approved: {decision.outcome}{who}")
    return {"decision": decision.outcome, "by": decision.by, "at": decision.at.isoformat()}


@action("ledger.decision", idempotent=True)
def _decision(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Record whatever was decided (including ``expired``) and carry on."""
    decision = ctx.decision
    if decision is None:
        return {"decision": None}
    return {"decision": decision.outcome, "by": decision.by, "at": decision.at.isoformat()}
