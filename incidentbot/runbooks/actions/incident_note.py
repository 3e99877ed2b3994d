"""``incident.note``: add a note to the incident's timeline (recorded once per step, however
many times the step is attempted)."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.ledger.actions import PermanentError
from incidentbot.runbooks.actions._common import shown
from incidentbot.runbooks.actions.base import Action, ActionContext

SOURCE_KEY_LIMIT = 200  # the timeline's source_key column


class IncidentNoteInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the note is empty: write what happened")
        return value


def source_key_for(token: str) -> str | None:
    """The timeline source key of the note written by the step with this token."""
    if not token:
        return None
    key = f"runbook:{token}"
    if len(key) > SOURCE_KEY_LIMIT:
        key = "runbook:sha256:" + hashlib.sha256(token.encode()).hexdigest()
    return key


class IncidentNote(Action):
    name = "incident.note"
    description = "Add a note to the incident's timeline."
    idempotent = True
    Inputs = IncidentNoteInputs
    outputs: ClassVar[dict[str, str]] = {"event_id": "the id of the timeline event"}

    def plan(self, inputs: IncidentNoteInputs, ctx: ActionContext) -> str:
        flat = " ".join(inputs.text.split())
        if ctx.incident is None:
            return shown(ctx, f"note on the incident's timeline (none given: would fail): {flat}")
        return shown(ctx, f"note on the {ctx.incident.ref} timeline: {flat}")

    def describe(self, outputs: dict[str, Any]) -> str:
        return "Wrote a note on the incident timeline"

    def run(self, inputs: IncidentNoteInputs, ctx: ActionContext) -> dict[str, Any]:
        from sqlalchemy.exc import IntegrityError

        from incidentbot import db
        from incidentbot.errors import DomainError
        from incidentbot.incidents import service as svc

        if ctx.incident is None:
            raise PermanentError("incident.note needs an incident: run the runbook for one")
        engine, settings = ctx.services.engine, ctx.services.settings
        if engine is None or settings is None:
            raise PermanentError(
                "incident.note needs the bot's database and settings, and this run has none"
            )
        key = source_key_for(ctx.idempotency_token)
        text = shown(ctx, inputs.text)
        actor = ctx.requester or "incidentbot"
        try:
            with db.transaction(engine) as session:
                existing = _event_id(session, key)
                if existing is not None:
                    return {"event_id": existing}
                event = svc.add_note(
                    session, settings, ctx.incident.ref, text, actor=actor, source_key=key
                )
                session.flush()
                event_id = event.id
        except DomainError as exc:
            raise PermanentError(f"cannot add the note to {ctx.incident.ref}: {exc}") from None
        except IntegrityError:
            # Another attempt of this step recorded it between our check and our insert.
            with db.transaction(engine) as session:
                existing = _event_id(session, key)
            if existing is None:
                raise
            return {"event_id": existing}
        return {"event_id": event_id}


def _event_id(session: Any, key: str | None) -> int | None:
    if key is None:
        return None
    from sqlmodel import select

    from incidentbot.incidents.models import TimelineEvent

    return session.exec(select(TimelineEvent.id).where(TimelineEvent.source_key == key)).first()
