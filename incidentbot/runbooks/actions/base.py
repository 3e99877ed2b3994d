"""The action plugin interface: what a runbook step's ``uses:`` names.

An action is a class with a name, a pydantic ``Inputs`` model (what ``with:`` may hold), a
``plan()`` that says what it *would* do without touching the world, and a ``run()`` that does it
and returns outputs (a JSON-able dict, readable by later steps as ``steps.<id>.outputs``).

Failures are reported the ledger's way: raise :class:`~incidentbot.ledger.RetryableError`
(nothing happened, try again), :class:`~incidentbot.ledger.OutcomeUnknownError` (it may have
happened) or :class:`~incidentbot.ledger.PermanentError` (retrying cannot help). httpx errors
are classified automatically.

Third-party packs register through the entry point group ``incidentbot.actions``: each entry
point names an :class:`Action` subclass, an iterable of them, or a callable returning them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from incidentbot.config import Settings
    from incidentbot.ports import Chat
    from incidentbot.runbooks.egress import EgressPolicy


class NoInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class IncidentInfo:
    """What a step may know about the incident it runs for (read-only)."""

    id: int
    ref: str
    title: str
    severity: str
    status: str
    channel_id: str | None = None
    commander: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "channel_id": self.channel_id,
            "commander": self.commander,
            "fields": dict(self.fields),
        }


@dataclass
class Services:
    """What the running bot lends to actions. Any of them may be None (the CLI has no Slack);
    an action that needs one it lacks raises PermanentError saying so."""

    engine: Engine | None = None
    settings: Settings | None = None
    chat: Chat | None = None
    egress: EgressPolicy | None = None  # None: the one of settings.runbooks.egress


@dataclass
class ActionContext:
    """Given to ``plan()`` and ``run()``.

    ``mask`` hides the run's secret values (and anything secret-shaped) in text an action
    produces; ``progress`` reports a line of progress (shown live by the CLI, masked)."""

    run_id: int | None
    step_id: str
    attempt: int = 1
    incident: IncidentInfo | None = None
    target: str | None = None
    requester: str | None = None
    services: Services = field(default_factory=Services)
    idempotency_token: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    mask: Callable[[str], str] = field(default=lambda text: text, repr=False)
    progress: Callable[[str], None] = field(default=lambda line: None, repr=False)
    # What :meth:`Action.remember` read before the step's first attempt (None in a plan or
    # for actions that remember nothing).
    remembered: dict[str, Any] | None = None

    def should_stop(self) -> bool:
        """True once the engine gave up on this attempt (timeout, lost lease, shutdown):
        long actions check it between polls and return or raise promptly."""
        return self.stop_event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; returns True if told to stop meanwhile."""
        return self.stop_event.wait(max(0.0, seconds))


class Action:
    """Base class of every action. Subclasses set the class attributes and override
    :meth:`plan` and :meth:`run`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # The default for steps that do not say: may this action be run again after a crash left
    # it unfinished without harm? (A read or a set-to-value is; a restart or a post is not.)
    idempotent: ClassVar[bool] = False
    Inputs: ClassVar[type[BaseModel]] = NoInputs
    # Output names and what they mean (documentation and `runbook show`).
    outputs: ClassVar[dict[str, str]] = {}
    # True for actions that use the chat adapter: their steps run only in a process that has
    # one (the bot), never fail for lack of it in a bare worker.
    needs_chat: ClassVar[bool] = False
    # The double-sign interlock (incidentbot.runbooks.keyguard): what the action does to a
    # validator key set. ``signs``: it starts a client signing with the keys; ``proves_stopped``:
    # it succeeds only once a client is proven to sign no more; ``imports_protection``: it
    # imports slashing-protection history at a client; ``verifies_protection``: it succeeds only
    # if a client's history covers the source's (and stops the run for attention if not).
    # ``key_set_input`` and ``client_input`` name the inputs saying which key set (validator
    # indices) and which client the step is about; ``key_set_input = None``: the step names
    # no key set (protection history travels in a file) and counts for any. ``client_input``
    # may name several inputs (a program and its data directory): steps sharing any of their
    # values are about the same client.
    signs: ClassVar[bool] = False
    proves_stopped: ClassVar[bool] = False
    imports_protection: ClassVar[bool] = False
    verifies_protection: ClassVar[bool] = False
    key_set_input: ClassVar[str | None] = "indices"
    client_input: ClassVar[str | tuple[str, ...]] = "program"

    def validate(self, data: dict[str, Any]) -> BaseModel:
        """Inputs after templates were rendered; raises pydantic.ValidationError."""
        return self.Inputs.model_validate(data)

    def plan(self, inputs: Any, ctx: ActionContext) -> str:
        """One line saying what :meth:`run` would do with these inputs. Must not touch the
        world: no network, no processes, no files, no database writes."""
        raise NotImplementedError

    def run(self, inputs: Any, ctx: ActionContext) -> dict[str, Any]:
        raise NotImplementedError

    def remember(self, inputs: Any, ctx: ActionContext) -> dict[str, Any] | None:
        """Actions that report what something was before they changed it (``previous``)
        read that state here, changing nothing. The engine calls it once, before the step's
        first attempt, and keeps the result in the run ledger; every attempt, also one after a
        crash half-way through the change, finds it in ``ctx.remembered``. None: nothing to
        remember (the default)."""
        return None

    def describe(self, outputs: dict[str, Any]) -> str:
        """What the step did, in one sentence people read in the run's Slack message ("Traffic
        moved to node-2; node-1 and node-3 drained"). ``outputs`` are the step's, as stored
        (secrets already masked); the JSON itself stays behind ``runs show`` and the run page.
        Must not raise on outputs of an unexpected shape. The default names up to three short
        outputs; actions override it."""
        return default_description(outputs)


def names(items: Any) -> str:
    """``a``, ``a and b``, ``a, b and c``: a list for a sentence."""
    words = [str(i) for i in (items or [])]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def plural(n: Any, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def default_description(outputs: dict[str, Any]) -> str:
    """``Done (status 200, ok true)``: the short scalar outputs, at most three."""
    short = [
        f"{k.replace('_', ' ')} {str(v).lower() if isinstance(v, bool) else v}"
        for k, v in outputs.items()
        if isinstance(v, (str, int, float, bool)) and len(str(v)) <= 40
    ][:3]
    return "Done" + (f" ({', '.join(short)})" if short else "")
