"""The on-call handoff: watch notes for the next handoff, and acknowledging one.

Posting a handoff (now, or on the schedule) builds it from PagerDuty and the chat's users and
sends it through the chat; that stays with the chat adapter that renders it
(:class:`incidentbot.slack.handoff_commands.HandoffCommands`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.errors import DomainError
from incidentbot.handoff import notes
from incidentbot.handoff.config import Rotation
from incidentbot.usecases.core import Actor, Core


@dataclass(frozen=True)
class NoteAdded:
    rotation: str
    text: str  # as stored (one line)


@dataclass(frozen=True)
class Acknowledged:
    rotation: str
    handoff_at: datetime
    by: str  # who acknowledged it (the actor, or whoever was first)
    at: datetime
    new: bool  # False: it was acknowledged before; ``by`` and ``at`` say when


class NotIncoming(DomainError):
    """Only the incoming on-call may acknowledge a handoff; ``incoming`` says who they are."""

    def __init__(self, incoming: list[str]):
        super().__init__(
            f"only the incoming on-call ({', '.join(incoming)}) can acknowledge this handoff"
        )
        self.incoming = incoming


def rotation(core: Core, name: str | None) -> Rotation:
    """The configured rotation ``name`` (None: the only one), or a DomainError naming them."""
    try:
        return core.settings.handoff.rotation(name)
    except ValueError as exc:
        raise DomainError(str(exc)) from None


def add_note(
    core: Core, actor: Actor, rotation_name: str | None, text: str, *, key: str | None = None
) -> NoteAdded:
    """Leave a watch note for the rotation's next handoff (once per ``key``: a retried request
    adds nothing)."""
    chosen = rotation(core, rotation_name)
    with db.transaction(core.engine) as s:
        note = notes.add_note(s, chosen.name, text, actor=actor.id, now=utcnow(), key=key)
    return NoteAdded(note.rotation, note.text)


def acknowledge(
    core: Core,
    actor: Actor,
    rotation_name: str,
    handoff_at: datetime,
    *,
    incoming: list[str],
) -> Acknowledged:
    """The incoming on-call acknowledges the handoff of ``handoff_at``, once. ``incoming`` is
    who the handoff named (empty: nobody was matched, so anyone may)."""
    chosen = rotation(core, rotation_name)
    if incoming and actor.id not in incoming:
        raise NotIncoming(incoming)
    with db.transaction(core.engine) as s:
        ack, new = notes.acknowledge(s, chosen.name, handoff_at, actor=actor.id, now=utcnow())
    return Acknowledged(ack.rotation, ack.handoff_at, ack.by, ack.at, new)
