"""The incident's posts outside its channel's header: the digest announcement (posted, updated,
linked to the channel) and its status updates, each in the order they were written.

A part of :class:`incidentbot.incidents.flows.ChatActions`, which provides the chat, the
renderer, the locks and the incident reads these use.
"""

from __future__ import annotations

from typing import Any

from incidentbot.incidents import service as svc
from incidentbot.incidents import update_posts
from incidentbot.incidents.models import Incident
from incidentbot.ledger.actions import StepContext


class AnnouncementPosts:
    """The digest and status-update actions of :class:`~incidentbot.incidents.flows.ChatActions`."""

    # Provided by ChatActions.
    chat: Any
    engine: Any
    settings: Any
    render: Any
    _lock: Any
    _incident: Any
    _fresh: Any
    _digest_channel: Any
    _installation_id: Any
    _save_done: Any

    def digest(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        """Post or update the digest announcement. The declare's own first attempt posts
        without looking: nothing can have announced the incident before it. Any other (a
        retry, a later refresh that finds no ts saved) first looks in the digest channel.
        The incident is read once, under the lock (what it shows, and whether it is out)."""
        reconcile = not (input.get("announce") and ctx.attempt == 1)
        with self._lock("digest", ctx.incident_id):
            return self._update_digest_locked(self._incident(ctx), reconcile)

    def _link_digest(self, inc: Incident) -> dict[str, Any]:
        """Link the announcement to the new channel once it is out. Posting it is the digest
        run's: if it is not out yet, that run reads the incident when it posts, channel
        included (the lock orders the two here)."""
        with self._lock("digest", inc):
            self._digest_channel()  # none: fails here too, so the failure shows in the channel
            fresh = self._fresh(inc)
            if fresh.digest_ts is None:
                return {"skipped": "not announced yet"}
            return self._update_digest_locked(fresh, True)

    def _update_digest_locked(self, inc: Incident, reconcile: bool) -> dict[str, Any]:
        """``inc`` read under the digest lock (so its ``digest_ts`` is current)."""
        channel = self._digest_channel()
        installation = self._installation_id()
        text, blocks = self.render.digest(inc, inc.channel_id, installation=installation)
        ts = inc.digest_ts
        if not ts and reconcile:
            block_id = self.render.digest_block_id(inc, installation)
            ts = self.chat.find_message(channel, block_id, since=inc.declared_at)
        updated = bool(ts)
        if ts:
            self.chat.update(channel, ts, text, blocks)
        else:
            ts = self.chat.post(channel, text, blocks)
        if inc.digest_ts != ts:
            self._save_done(
                inc, "digest_ts", ts, "digest.announced",
                f"Announced in #{self.settings.channels.digest}", ts=ts,
            )  # fmt: skip
        return {"ts": ts, "updated": updated}

    def status_update(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        """Post a status update, after the incident's earlier ones still to go (in order)."""
        inc = self._incident(ctx)
        installation = self._installation_id()

        def render(event: svc.TimelineEvent) -> tuple[str, list[dict[str, Any]], str]:
            text, blocks = self.render.status_update(inc, event, installation=installation)
            return text, blocks, self.render.update_block_id(event, installation)

        # A private incident's updates stay in its own channel.
        digest = None if inc.private else self._digest_channel()
        targets = [c for c in (inc.channel_id, digest) if c]
        posted: dict[str, str] = {}
        with self._lock("update", inc):
            for event in update_posts.updates_to_post(self.engine, inc, input["event_id"]):
                posted = update_posts.post_one(
                    event,
                    targets,
                    find=lambda c, b, since: self.chat.find_message(c, b, since=since),
                    post=self.chat.post,
                    render=render,
                )
        return {"posted": posted}
