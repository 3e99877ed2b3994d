"""The standby channels' actions: taking one for a declare, renaming it as it is furnished,
falling back to creating a channel when Slack refuses, and filling the pool again.

A part of :class:`incidentbot.incidents.flows.ChatActions`, which provides the chat, the
database, the incident reads and the furnishing these use. The pool itself (its rows, the take,
the refill) is :mod:`incidentbot.incidents.standby`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlmodel import Session

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.incidents import service as svc
from incidentbot.incidents import standby
from incidentbot.incidents.models import Incident
from incidentbot.incidents.naming import MAX_PURPOSE, channel_name, owner_tag
from incidentbot.incidents.row_reads import incident_row
from incidentbot.ledger.actions import PermanentError, StepContext
from incidentbot.paging.flows import link_channel
from incidentbot.ports import ChannelInfo, ExternalError

log = logging.getLogger(__name__)

MAX_NAME_SUFFIX = 20
_STANDBY = standby.StandbyChannel.__table__  # type: ignore[attr-defined]
# standby.held_by's question in one Core statement: the channel an incident took, not renamed.
_HELD = (
    select(_STANDBY.c.id, _STANDBY.c.channel_id, _STANDBY.c.private)
    .where(_STANDBY.c.incident_id == bindparam("b_id"), _STANDBY.c.state == standby.TAKEN)
    .limit(1)
)
MAX_STANDBY_NAMES = 5


def standby_purpose(row_id: int, installation: str) -> str:
    """A spare's purpose: says what it is to whoever finds it in the channel list, and marks it
    as this installation's (so a retry adopts only its own)."""
    text = (
        f"[standby {row_id}] Kept ready by incidentbot for the next incident: it becomes that "
        "incident's channel (renamed). Please do not use it."
    )
    return f"{text[: MAX_PURPOSE - len(owner_tag(installation)) - 1]} {owner_tag(installation)}"


@dataclass(frozen=True)
class Opening:
    """What a channel step's ``prepare`` read: the incident (None: it does not exist) and the
    standby channel taken for it, if any (its row id, channel id and privacy)."""

    incident: Incident | None
    standby: dict[str, Any] | None


class StandbyChannels:
    """The standby-channel actions of :class:`~incidentbot.incidents.flows.ChatActions`."""

    # Provided by ChatActions.
    chat: Any
    engine: Any
    settings: Any
    BOT_ACTOR = "incidentbot"
    _installation_id: Any
    _bot_id: Any
    _fresh: Any
    _furnish: Any
    _furnished: Any
    _create_and_furnish: Any

    def ensure_standby(self) -> None:
        """Queue the spares the pool lacks (at start: the setting may have just been turned on,
        or a fill may have failed)."""
        try:
            with db.transaction(self.engine) as s:
                standby.ensure(s)
        except Exception as exc:  # the bot serves without spares: declares create channels
            log.warning("could not queue standby channels: %s", exc)

    # -- taking one ------------------------------------------------------------------------

    def prepare_open_channel(
        self, session: Session, ctx: StepContext, input: dict[str, Any]
    ) -> Opening | None:
        """In the transaction that marks the channel step started (fenced by its lease): the
        incident, read there once for the whole step, and for a declare's channel the standby
        channel this incident took on an interrupted attempt, or one it takes now (the refill
        is queued once it is renamed). The incident gets the channel's id at once, so
        everything that posts to it (the header, the digest's link, a page's note) can go out
        before the rename is answered."""
        if ctx.incident_id is None:
            return None
        taken: dict[str, Any] | None = None
        inc: Incident | None = None
        if input.get("furnish"):  # (a run queued in two steps by an older version creates)
            # One indexed read: a crash between the take and the rename leaves the spare taken.
            held = session.connection().execute(_HELD, {"b_id": ctx.incident_id}).first()
            if held is not None:
                taken = {"standby_id": held.id, "channel_id": held.channel_id,
                         "private": held.private}  # fmt: skip
            elif self.settings.channels.standby:
                inc = session.get(Incident, ctx.incident_id, with_for_update=True)
                if inc is not None and not inc.channel_id:
                    private = bool(inc.private)
                    took = standby.take(session, ctx.incident_id, private=private)
                    if took is not None:
                        inc.channel_id, inc.channel_name = took[1], self._channel_name(inc)
                        session.add(inc)
                        taken = {"standby_id": took[0], "channel_id": took[1], "private": private}
        if inc is None:  # one statement, not an ORM load: the step's one read of it
            inc = incident_row(session.connection(), ctx.incident_id)
        return Opening(inc, taken)

    def _channel_name(self, inc: Incident, n: int = 1) -> str:
        return channel_name(
            self.settings.channels.naming,
            number=inc.number,
            title=inc.title,
            severity=inc.severity,
            declared_at=inc.declared_at,
            suffix="" if n == 1 else f"-{n}",
        )

    def _open_standby(
        self, ctx: StepContext, inc: Incident, taken: dict[str, Any], declarer: str | None
    ) -> dict[str, Any]:
        """Rename the taken channel while it is furnished (two dependent round trips: the
        header, then its pin). Slack refusing the rename for another reason than the name
        (the channel archived or gone meanwhile, the bot removed from it) discards the spare
        and creates a channel as a declare without one does: the declare is not lost."""
        channel_id = taken["channel_id"]
        outcomes = self._furnish(
            inc,
            declarer,
            reconcile=ctx.attempt > 1,
            also={"renamed": lambda: self._rename_standby(inc, taken)},
        )
        refused = outcomes["renamed"]
        if isinstance(refused, ExternalError) and not refused.retryable:
            log.warning(
                "%s: Slack refused to rename standby channel %s (%s): creating a channel",
                inc.ref, channel_id, refused.code,
            )  # fmt: skip
            self._set_aside(taken, inc=inc)
            opened = self._create_and_furnish(ctx, self._fresh(inc), declarer, furnish=True)
            return opened | {"standby_refused": refused.code}
        furnished = self._furnished(outcomes)
        return (
            {"channel_id": channel_id, "channel": outcomes["renamed"]}
            | furnished
            | {"standby_id": taken["standby_id"]}
        )

    def _keep_standby(self, inc: Incident, taken: dict[str, Any]) -> bool:
        """Whether the spare taken is the incident's channel. It is not when the incident has
        another (its channel was set meanwhile by other means): the spare is set aside, and the
        incident's own channel is furnished."""
        if inc.channel_id == taken["channel_id"]:
            return True
        self._set_aside(taken, inc=None)
        return False

    def _rename_standby(self, inc: Incident, taken: dict[str, Any]) -> str:
        """Rename the spare to the incident's channel name (``-2``… when the name is someone
        else's, as a created channel would be), then record it as the incident's channel."""
        channel_id = taken["channel_id"]
        for n in range(1, MAX_NAME_SUFFIX + 1):
            name = self._channel_name(inc, n)
            try:
                channel = self.chat.rename_channel(channel_id, name)
                break
            except ExternalError as exc:
                if exc.code != "name_taken":
                    raise
            # Taken: by this very channel (an earlier attempt renamed it and its answer was
            # lost) or by another one.
            existing = self.chat.find_channel(name)
            if existing is not None and existing.id == channel_id:
                channel = existing
                break
        else:
            raise PermanentError(f"no free channel name after {MAX_NAME_SUFFIX} tries")
        with db.transaction(self.engine) as s:
            row = s.get(Incident, inc.id, with_for_update=True)
            assert row is not None
            row.channel_name = channel.name
            s.add(row)
            standby.settle(s, taken["standby_id"], standby.USED, channel_name=channel.name)
            standby.queue_fill(s, private=bool(taken.get("private")))  # the pool, refilled
            link_channel(s, row)  # pages opened before the channel get its link
            svc.record(
                s,
                row,
                "channel.created",
                self.BOT_ACTOR,
                f"Channel #{channel.name} created (a standby channel, renamed)",
                now=utcnow(),
                data={"channel_id": channel.id, "channel": channel.name, "standby": True},
            )
        return str(channel.name)

    def _set_aside(self, taken: dict[str, Any], *, inc: Incident | None) -> None:
        """Discard a spare taken but not used, and refill the pool; with ``inc``, the incident
        forgets it (and a header posted in it) so that a channel is created for it."""
        with db.transaction(self.engine) as s:
            standby.settle(s, taken["standby_id"], standby.DISCARDED)
            standby.queue_fill(s, private=bool(taken.get("private")))
            if inc is not None:
                row = s.get(Incident, inc.id, with_for_update=True)
                assert row is not None
                row.channel_id = row.channel_name = row.header_ts = None
                s.add(row)

    # -- filling the pool ------------------------------------------------------------------

    def fill_standby(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        """Create a spare channel (or adopt the one an interrupted attempt created), say what it
        is in its purpose, and mark it ready."""
        row_id = int(input["standby_id"])
        with db.read(self.engine) as s:
            row = s.get(standby.StandbyChannel, row_id)
        if row is None:
            raise PermanentError(f"standby channel {row_id} does not exist")
        if row.state != standby.FILLING:
            return {"skipped": row.state}
        purpose = standby_purpose(row_id, self._installation_id())
        channel = self._create_spare(row_id, row.private, purpose)
        if channel.purpose != purpose:
            self.chat.set_purpose(channel.id, purpose)
        with db.transaction(self.engine) as s:
            standby.settle(
                s, row_id, standby.READY, channel_id=channel.id, channel_name=channel.name
            )
        return {"channel_id": channel.id, "channel": channel.name}

    def _create_spare(self, row_id: int, private: bool, purpose: str) -> ChannelInfo:
        for n in range(1, MAX_STANDBY_NAMES + 1):
            name = standby.standby_name(row_id, n)
            try:
                return self.chat.create_channel(name, private=private)  # type: ignore[no-any-return]
            except ExternalError as exc:
                if exc.code != "name_taken":
                    raise
            existing = self.chat.find_channel(name)
            if (
                existing is not None
                and not existing.archived
                and existing.purpose in ("", purpose)
                and existing.creator in (None, self._bot_id())
            ):
                return existing  # type: ignore[no-any-return]
        raise PermanentError(f"no free standby channel name after {MAX_STANDBY_NAMES} tries")
