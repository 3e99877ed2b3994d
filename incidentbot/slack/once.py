"""Bolt's App, each Slack request run once across replicas (:mod:`incidentbot.inbound`).

Both doors Slack uses end in ``App.dispatch``: the HTTP endpoint and Socket Mode. Here what
people typed is cleaned of invisible control characters (:mod:`incidentbot.typed_text`), and a
request is claimed by what makes it itself before it runs: a replay of captured bytes, or
Slack's retry of a command, click or event (over HTTP or Socket Mode), gets the first answer.
A declare (a slash command or the declare form) or a change typed in an incident's channel
(a note, a severity, a status, a role, an update…) is claimed inside its own transaction
(:func:`inbound.deferred`): one commit for both. A command that only reads (``list``,
``timeline``…) is not claimed: its key is looked up, and its answer recorded once sent
(:mod:`incidentbot.inbound_reads`).
The Slack users a request names are handed to the people directory
(:class:`~incidentbot.people.lookup.Sightings`), which looks them up once the answer is out.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware.authorization import SingleTeamAuthorization
from sqlalchemy.engine import Engine

from incidentbot import inbound, inbound_answers, inbound_reads, priority
from incidentbot.people.lookup import Sightings
from incidentbot.slack import after_answer
from incidentbot.slack.command_table import ALIASES
from incidentbot.slack.grammar import normalize
from incidentbot.slack.modal import CALLBACK_ID as DECLARE_FORM
from incidentbot.slack.seen import seen_users
from incidentbot.slack.web_client import PooledWebClient, share_connections
from incidentbot.typed_text import clean_tree


def request_key(body: dict[str, Any], headers: dict[str, Any]) -> str | None:
    """The event id, else the trigger id (one per command typed or button clicked), else (over
    HTTP) the signature. ``None``: nothing identifies the request, so it just runs."""
    event_id = body.get("event_id")
    if isinstance(event_id, str) and event_id:
        return f"slack:event:{event_id}"
    trigger_id = body.get("trigger_id")
    if isinstance(trigger_id, str) and trigger_id:
        return f"slack:trigger:{trigger_id}"
    signature = headers.get("x-slack-signature")
    if isinstance(signature, list | tuple):
        signature = signature[0] if signature else None
    if isinstance(signature, str) and signature:
        return f"slack:signature:{signature}"
    return None


def socket_mode_handler(app: App, app_token: str) -> Any:
    """Bolt's Socket Mode handler, holding back the work that can wait (:mod:`priority`) and
    the listeners' Slack calls (:mod:`after_answer`) until each request's acknowledgement is
    sent on the WebSocket, not only until it is decided."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    class Handler(SocketModeHandler):
        def handle(self, client: Any, req: Any) -> None:
            with after_answer.answer(), priority.urgent():
                super().handle(client, req)

    return Handler(app, app_token)


class OnceApp(App):
    def __init__(
        self, *args: Any, engine: Engine, people: Sightings | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._engine = engine
        self._people = people
        self._answers = inbound_answers.Finishes(engine)
        self._reads = inbound_reads.Recordings(engine)

    def warm(self) -> None:
        """Ask Slack who the bot is now, not while the first request waits for its answer
        (Bolt's single-workspace authorization otherwise calls ``auth.test`` then)."""
        for middleware in self._middleware_list:
            unasked = getattr(middleware, "auth_test_result", True) is None
            if isinstance(middleware, SingleTeamAuthorization) and unasked:
                middleware.auth_test_result = self.client.auth_test()

    def _init_context(self, req: BoltRequest) -> None:
        super()._init_context(req)
        # Bolt gives each request a WebClient and a respond() that open a connection per call.
        if isinstance(self._client, PooledWebClient):
            share_connections(req.context, self._client)

    def close(self) -> None:
        """Store the answers still queued (see :class:`incidentbot.inbound_answers.Finishes`)."""
        self._answers.close()
        self._reads.close()

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        # Slack is timing the answer: work that can wait (an alert storm) waits for it, and so
        # do the listeners' Slack calls (until the door has written it, where a door says when).
        with after_answer.answer(), priority.urgent():
            if self._people is None:
                return self._dispatch(req)
            body = req.body if isinstance(req.body, dict) else {}
            with self._people.answering():
                # Only queued here, once this request counts as being answered: the lookups
                # wait until none is (queued first, a lookup could start alongside it).
                self._people.saw(*seen_users(body))
                return self._dispatch(req)

    def _dispatch(self, req: BoltRequest) -> BoltResponse:
        body = req.body if isinstance(req.body, dict) else {}
        # What people typed, without invisible controls, before any listener reads it (the
        # signature was checked on the raw bytes, which stay as they came).
        req.body = body = clean_tree(body)
        key = request_key(body, dict(req.headers))
        if key is None:
            return super().dispatch(req)
        queued, answer = self._answers.pending(key)  # answered here, not stored yet
        if not queued:
            queued, answer = self._reads.pending(key)
        if not queued:
            if _only_reads(body):  # not claimed: looked up, run, recorded once sent
                seen = inbound_reads.recorded(self._engine, key)
                if seen is None:
                    resp = super().dispatch(req)
                    if resp.status < 500:
                        self._reads.add(key, _answer(resp))
                    return resp
                return _replayed(seen.answer)
            if _claimed_with_its_work(body):
                with inbound.deferred(key) as holder:
                    resp = super().dispatch(req)
                if holder.undone:  # refused or failed in its transaction: nothing is stored
                    return resp
                if not holder.taken:
                    if holder.claimed or inbound.claim(self._engine, key).outcome == "run":
                        self._store(key, resp)
                    return resp
                # A replay or a retry: its transaction stopped at the claim, nothing changed.
            claimed = inbound.claim(self._engine, key)
            if claimed.outcome == "run":
                resp = super().dispatch(req)
                self._store(key, resp)
                return resp
            answer = claimed.answer
        return _replayed(answer)

    def _store(self, key: str, resp: BoltResponse) -> None:
        # A failure is not stored: Slack's retry of it may run again once the claim expires.
        # The answer is stored after it is sent, off Slack's clock.
        if resp.status < 500:
            self._answers.add(key, _answer(resp))


def _answer(resp: BoltResponse) -> inbound.Answer:
    kind = resp.headers.get("content-type") or [None]
    body_text = resp.body if isinstance(resp.body, str) else ""
    return inbound.Answer(resp.status, kind[0], body_text)


def _replayed(answer: inbound.Answer | None) -> BoltResponse:
    """The first answer again (``None``: it is running elsewhere, an empty acknowledgement)."""
    if answer is None:
        return BoltResponse(status=200, body="")
    headers = {"content-type": [answer.content_type]} if answer.content_type else {}
    return BoltResponse(status=answer.status, body=answer.body, headers=headers)


# The subcommands whose first effect is their one transaction, before anything calls Slack or
# PagerDuty (declare with a title, and each change typed in an incident's channel: their use
# cases write in inbound.claimed_transaction). Not ``page link``: it asks PagerDuty first.
_WRITE_FIRST = frozenset(
    {
        "declare",
        "note",
        "sev",
        "status",
        "field",
        "assign",
        "unassign",
        "update",
        "milestone",
        "resolve",
        "close",
        "reopen",
        "page",
    }
)


# The subcommands that only read and answer (no Slack call, no write): run again, they could
# only show newer data (:mod:`incidentbot.inbound_reads`). Not a bare ``/incident``: outside an
# incident's channel it opens the declare form.
_READS = frozenset({"list", "timeline", "summary", "roles", "help"})


def _only_reads(body: dict[str, Any]) -> bool:
    text = body.get("text")
    if not body.get("command") or not isinstance(text, str):
        return False
    words = normalize(text).lower().split(" ", 1)
    return ALIASES.get(words[0], words[0]) in _READS


def _claimed_with_its_work(body: dict[str, Any]) -> bool:
    """A declare, typed as a slash command or submitted from the declare form, or a change
    typed in an incident's channel (:data:`_WRITE_FIRST`): each writes everything in one
    transaction before anything calls Slack, so its claim goes into that transaction
    (:func:`inbound.deferred`). A request that calls Slack (or PagerDuty) before it writes is
    claimed first: a replay of it would repeat the call."""
    if body.get("type") == "view_submission":
        view = body.get("view")
        return isinstance(view, dict) and view.get("callback_id") == DECLARE_FORM
    text = body.get("text")
    if not body.get("command") or not isinstance(text, str):
        return False
    words = normalize(text).lower().split(" ", 2)  # as the grammar reads it
    name = ALIASES.get(words[0], words[0])
    if name == "page" and words[1:2] == ["link"]:
        return False
    return name in _WRITE_FIRST
