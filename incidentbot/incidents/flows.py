"""The ``chat.*`` ledger actions behind an incident's durable side effects: the channel,
invites, header, digest and updates (queued by :mod:`incidentbot.incidents.effects`).

Every action here is idempotent:
when an earlier outcome is unknown (a later attempt of the step, a channel name already taken,
no message ts saved by a later refresh) it looks for what that attempt may already have done (a
channel carrying the incident's marker, a message carrying its block id) before doing it again.
A declare's first attempts read nothing back from Slack. Actions read the
incident's *current* state when they run, so a refresh that runs late still shows the latest.

The chat platform is reached only through the :class:`~incidentbot.ports.Chat` port.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from incidentbot import db
from incidentbot.chat_text import mrkdwn
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.announcements import AnnouncementPosts
from incidentbot.incidents.effect_saves import BOT_ACTOR, EffectSaves
from incidentbot.incidents.effects import EFFECTS
from incidentbot.incidents.models import Incident
from incidentbot.incidents.naming import is_owned, purpose_of
from incidentbot.incidents.records import event_row, insert_events
from incidentbot.incidents.row_reads import active_roles_on, incident_row, pages_on
from incidentbot.incidents.standby import FILL_ACTION
from incidentbot.incidents.standby_channels import MAX_NAME_SUFFIX, Opening, StandbyChannels
from incidentbot.installation import installation_id
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import ActionRegistry, PermanentError, RetryableError, StepContext
from incidentbot.ledger.actions import registry as default_registry
from incidentbot.ledger.events import LedgerEvent
from incidentbot.ledger.redact import redact_text
from incidentbot.paging.flows import link_channel
from incidentbot.ports import ChannelInfo, Chat, ExternalError

log = logging.getLogger(__name__)


# Renders messages for the chat platform: (incident, roles) -> (text, blocks), etc. Supplied by
# the adapter (Slack Block Kit) so that this module stays platform-neutral.
Renderer = Any


class ChatActions(AnnouncementPosts, StandbyChannels, EffectSaves):
    """The ``chat.*`` ledger actions, bound to a Chat adapter, a database and a renderer."""

    def __init__(self, chat: Chat, engine: Engine, settings: Settings, render: Renderer):
        self.chat = chat
        self.engine = engine
        self.settings = settings
        self.render = render
        self._digest_channel_id: str | None = None
        self._installation: str | None = None
        # Find-then-post of the header and the digest message must not interleave for one
        # incident, or two workers would both find nothing and both post.
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, what: str, incident: Incident | int) -> threading.Lock:
        key = incident if isinstance(incident, int) else incident.id
        assert key is not None
        with self._locks_guard:
            return self._locks.setdefault((what, key), threading.Lock())

    def install(self, registry: ActionRegistry = default_registry) -> None:
        registry.register("chat.open_channel", self.open_channel, idempotent=True, replace=True,
                          prepare=self.prepare_open_channel)  # fmt: skip
        for name, fn in (
            (FILL_ACTION, self.fill_standby),
            ("chat.furnish_channel", self.furnish_channel),
            ("chat.header", self.header),
            ("chat.digest", self.digest),
            ("chat.status_update", self.status_update),
        ):
            registry.register(name, fn, idempotent=True, replace=True)
        if self.settings.channels.standby:
            self.ensure_standby()

    # -- failures --------------------------------------------------------------------------

    def on_ledger_event(self, ev: LedgerEvent) -> None:
        """An incident effect that finally failed: on the timeline, to whoever caused it, and
        in the incident's channel when there is one. (Called after the run's commit.)"""
        if ev.kind not in ("run.failed", "run.needs_attention") or ev.incident_id is None:
            return
        if not ev.run_kind.startswith("incident."):
            return
        with db.transaction(self.engine) as s:
            run = ledger.get_run(s, ev.run_id)
            inc = s.get(Incident, ev.incident_id)
            if inc is None:
                return
            what = EFFECTS.get(ev.run_kind, ev.run_kind)
            outcome = "failed" if ev.kind == "run.failed" else "needs attention"
            summary = f"Could not {what} ({outcome}): {redact_text(ev.error or 'unknown error')}"
            svc.record(
                s,
                inc,
                "effect.failed",
                BOT_ACTOR,
                summary,
                now=utcnow(),
                data={"run_id": ev.run_id, "run_kind": ev.run_kind},
            )
        text, blocks = self.render.plain(f":warning: {inc.ref}: {mrkdwn(summary)}")
        targets = [inc.channel_id] if inc.channel_id else []
        if _is_slack_user(run.created_by):
            targets.append(run.created_by)  # a direct message to whoever caused the effect
        for target in targets:
            self._best_effort(lambda t=target: self.chat.post(t, text, blocks))

    @staticmethod
    def _best_effort(call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:  # reporting a failure must not fail in turn
            log.warning("could not report an incident effect failure: %s", exc)

    # -- helpers ---------------------------------------------------------------------------

    def _incident(self, ctx: StepContext) -> Incident:
        inc = self._read(ctx.incident_id)
        if inc is None:
            raise PermanentError(f"incident id {ctx.incident_id} does not exist")
        return inc

    def _installation_id(self) -> str:
        if self._installation is None:
            self._installation = installation_id(self.engine)
        return self._installation

    def _digest_channel(self) -> str:
        if self._digest_channel_id is None:
            name = self.settings.channels.digest
            found = self.chat.find_channel(name)
            if found is None:
                raise PermanentError(f"digest channel #{name} does not exist: create it in Slack")
            self._digest_channel_id = found.id
        return self._digest_channel_id

    def _owned_by_other_incident(self, channel_id: str, incident: Incident) -> bool:
        with db.read(self.engine) as s:
            other = s.exec(select(Incident).where(Incident.channel_id == channel_id)).first()
        return other is not None and other.id != incident.id

    # -- actions ---------------------------------------------------------------------------

    def open_channel(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        """Create the channel, or adopt the one an interrupted attempt already created; with
        ``furnish`` in the input (a declare's channel run), go on at once to furnish it as
        :meth:`furnish_channel` does, so the header is not held up by a second step."""
        opening = ctx.prepared if isinstance(ctx.prepared, Opening) else Opening(None, None)
        inc = opening.incident or self._incident(ctx)  # read as the step started (its prepare)
        declarer = input.get("declarer")
        taken = opening.standby
        if taken is not None and self._keep_standby(inc, taken):  # taken for this incident
            return self._open_standby(ctx, inc, taken, declarer)
        if inc.channel_id:
            opened = {"channel_id": inc.channel_id, "channel": inc.channel_name, "adopted": True}
            if input.get("furnish"):  # an earlier attempt's outcome is unknown: look first
                opened |= self._furnished(self._furnish(inc, declarer, reconcile=True))
            return opened
        return self._create_and_furnish(ctx, inc, declarer, furnish=bool(input.get("furnish")))

    def _create_and_furnish(
        self, ctx: StepContext, inc: Incident, declarer: str | None, *, furnish: bool
    ) -> dict[str, Any]:
        opened, inc = self._create_channel(inc)
        if furnish:
            # A channel adopted, not created, may hold what an earlier attempt did: look first.
            reconcile = ctx.attempt > 1 or bool(opened.get("adopted"))
            opened |= self._furnished(self._furnish(inc, declarer, reconcile=reconcile))
        return opened

    def _create_channel(self, inc: Incident) -> tuple[dict[str, Any], Incident]:
        adopted = False
        for n in range(1, MAX_NAME_SUFFIX + 1):
            name = self._channel_name(inc, n)
            # Create first: on the happy path the name is free and nothing needs reading.
            try:
                channel = self.chat.create_channel(name, private=inc.private)
                break
            except ExternalError as exc:
                if exc.code != "name_taken":
                    raise
            # Taken: by this incident's channel (an earlier attempt created it and its answer
            # was lost, or it crashed before saving it) or by someone else's.
            existing = self.chat.find_channel(name)
            if existing is not None and not existing.archived and self._is_mine(existing, inc):
                channel, adopted = existing, True
                break
        else:
            raise PermanentError(f"no free channel name after {MAX_NAME_SUFFIX} tries")
        with db.transaction(self.engine) as s:
            # Locked as a page trigger locks it, so one of the two always links the channel.
            row = s.get(Incident, inc.id, with_for_update=True)
            assert row is not None
            row.channel_id, row.channel_name = channel.id, channel.name
            s.add(row)
            if pages_on(s.connection(), row.id):  # most declares have none: one Core read
                link_channel(s, row)  # pages opened before the channel get its link
            # In the same commit: a crash cannot leave a channel saved but not on the timeline.
            insert_events(s, [event_row(
                row, "channel.created", BOT_ACTOR, f"Channel #{channel.name} created",
                now=utcnow(), data={"channel_id": channel.id, "channel": channel.name},
            )])  # fmt: skip
        opened: dict[str, Any] = {"channel_id": channel.id, "channel": channel.name}
        return opened | ({"adopted": True} if adopted else {}), row

    def _is_mine(self, existing: ChannelInfo, inc: Incident) -> bool:
        return is_owned(existing.purpose, inc, self._installation_id()) or (
            not existing.purpose
            and not self._owned_by_other_incident(existing.id, inc)
            and existing.creator in (None, self._bot_id())
        )

    def _bot_id(self) -> str | None:
        bot = getattr(self.chat, "bot_user_id", None)
        return bot() if callable(bot) else None

    def furnish_channel(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        """Topic, purpose, invites and the header, concurrently (none depends on another).

        The first attempt reads nothing back from Slack: the channel is new, so no one is in it
        and no header is posted. A later attempt follows one whose outcome is unknown (a crash,
        a lost answer) and looks first (members, the channel's history)."""
        inc = self._incident(ctx)
        if not inc.channel_id:
            raise RetryableError("the channel does not exist yet")
        return self._furnished(self._furnish(inc, input.get("declarer"), reconcile=ctx.attempt > 1))

    def _furnish(
        self,
        inc: Incident,
        declarer: str | None,
        *,
        reconcile: bool,
        also: dict[str, Callable[[], Any]] | None = None,
    ) -> dict[str, Any]:
        """Topic, purpose, invitations, header (then its pin) and the digest's link, at once,
        with ``also`` (a standby channel's rename): returns the outcome of each job, a result
        or the exception it raised, once all have ended."""
        assert inc.channel_id is not None
        channel = inc.channel_id
        topic = self._topic(inc)
        purpose = purpose_of(inc, self._installation_id())
        users = self._responders(inc, declarer)
        jobs: dict[str, Callable[[], Any]] = {
            **(also or {}),
            "topic": lambda: self.chat.set_topic(channel, topic),
            "purpose": lambda: self.chat.set_purpose(channel, purpose),
            "invited": lambda: self.chat.invite(channel, users, read_members=reconcile),
            "header": lambda: self._post_header(inc, reconcile=reconcile),
            # The announcement may have gone out before the channel existed: link it now.
            "digest": lambda: self._link_digest(inc),
        }
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = {key: pool.submit(job) for key, job in jobs.items()}
        outcomes = {key: f.exception() or f.result() for key, f in futures.items()}
        if not isinstance(outcomes["invited"], BaseException):
            self._record_invited(inc, users, outcomes["invited"] or [])
        return outcomes

    def _furnished(self, outcomes: dict[str, Any]) -> dict[str, Any]:
        """The step's result from :meth:`_furnish`'s outcomes; the first failure raised."""
        for outcome in outcomes.values():
            if isinstance(outcome, BaseException):
                raise outcome
        return {"invited": outcomes["invited"] or [], "header_ts": outcomes["header"]}

    def _topic(self, inc: Incident) -> str:
        sev = next((s for s in self.settings.severities if s.name == inc.severity), None)
        label = f" {sev.label}" if sev else ""
        return f"{inc.ref} · {inc.severity}{label} · {inc.status}"

    def _responders(self, inc: Incident, declarer: str | None) -> list[str]:
        users = [u for u in (declarer, inc.commander) if u and _is_slack_user(u)]
        users += list(self.settings.responders.users)
        for group in self.settings.responders.groups:
            users += self.chat.usergroup_members(group)
        return list(dict.fromkeys(users))

    def _post_header(self, inc: Incident, *, reconcile: bool = True) -> str:
        """Post (or update) the header message and pin it; returns its ts. ``reconcile``: with
        no ts saved, look in the channel's history for one an interrupted attempt posted."""
        with self._lock("header", inc):
            return self._post_header_locked(inc, reconcile)

    def _post_header_locked(self, inc: Incident, reconcile: bool) -> str:
        # One snapshot (on SQLite; as db.read on PostgreSQL): the incident, its roles and pages.
        with db.reader(self.engine).connect() as conn:
            inc = incident_row(conn, inc.id) or inc
            roles = active_roles_on(conn, inc.id)
            pages = [
                f":pager: PagerDuty <{mrkdwn(p.url)}|#{p.number}> {p.service}: {p.status}"
                + (
                    f" by {mrkdwn(p.acknowledged_by)}"
                    if p.acknowledged_by and p.status != "resolved"
                    else ""
                )
                if p.number
                else f":pager: {p.service}: {p.status}"
                for p in pages_on(conn, inc.id)
            ]
            conn.rollback()
        installation = self._installation_id()
        text, blocks = self.render.header(inc, roles, extra_lines=pages, installation=installation)
        assert inc.channel_id is not None
        ts = inc.header_ts
        if not ts and reconcile:
            block_id = self.render.header_block_id(inc, installation)
            ts = self.chat.find_message(inc.channel_id, block_id, since=inc.declared_at)
        if ts:
            self.chat.update(inc.channel_id, ts, text, blocks)
        else:
            ts = self.chat.post(inc.channel_id, text, blocks)
        self.chat.pin(inc.channel_id, ts)
        if inc.header_ts != ts:
            self._save_done(
                inc, "header_ts", ts, "header.posted", "Incident header posted and pinned",
                ts=ts,
            )  # fmt: skip
        return ts

    def _fresh(self, inc: Incident) -> Incident:
        row = self._read(inc.id)
        assert row is not None
        return row

    def _read(self, incident_id: int | None) -> Incident | None:
        """The incident as stored now: one statement, no session (each declare's fan-out
        reads it several times)."""
        with db.reader(self.engine).connect() as conn:
            inc = incident_row(conn, incident_id)
            conn.rollback()
        return inc

    def header(self, ctx: StepContext, _input: dict[str, Any]) -> dict[str, Any]:
        inc = self._incident(ctx)
        if not inc.channel_id:
            # The declare's own channel run posts the header, with whatever is current then.
            return {"skipped": "no channel yet"}
        self.chat.set_topic(inc.channel_id, self._topic(self._fresh(inc)))
        return {"ts": self._post_header(inc)}


def _is_slack_user(user: str) -> bool:
    return user[:1] in ("U", "W") and user.isalnum() and user.upper() == user
