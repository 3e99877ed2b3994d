"""Bolt wiring: the /incident command, the declare form, and the events we listen to.

Listeners stay thin: they time the request, hand it to :class:`CommandHandler`, acknowledge
with its reply, and only then make the calls that may wait (opening the form). Events are
deduplicated by what they describe (a pinned message is recorded once), so Slack's retries
change nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from sqlalchemy.exc import IntegrityError

from incidentbot import db, priority
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.metrics import Metrics
from incidentbot.paging.links import RESOLVE_BUTTON as PAGERDUTY_RESOLVE
from incidentbot.people.lookup import Sightings
from incidentbot.slack import postmortem_views
from incidentbot.slack.action_commands import ActionCommands
from incidentbot.slack.commands import CommandHandler
from incidentbot.slack.handoff_commands import BUTTON as HANDOFF_BUTTON
from incidentbot.slack.handoff_commands import HandoffCommands
from incidentbot.slack.incident_commands import resolve_click
from incidentbot.slack.modal import CALLBACK_ID, declare_view, field_errors, read_submission
from incidentbot.slack.once import OnceApp
from incidentbot.slack.postmortem_commands import PostmortemCommands
from incidentbot.slack.reminder_commands import DISMISS_ACTION, SNOOZE_ACTION, ReminderCommands
from incidentbot.slack.reply import Reply
from incidentbot.slack.runbook_commands import FORM_CALLBACK, RunbookCommands
from incidentbot.usecases.core import Core

log = logging.getLogger(__name__)
# The name Bolt gives its own loggers ("incidentbot-slack", "incidentbot-slack:on_command", ...).
BOLT_APP_NAME = "incidentbot-slack"
CONFIRM_AFTER_S = 1.0  # a form's confirmation waits for the answers being sent, at most this


def build_bolt_app(
    core: Core,
    *,
    client: WebClient,
    signing_secret: str | None,
    metrics: Metrics,
    runbooks: RunbookCommands | None = None,
    actions: ActionCommands | None = None,
    postmortems: PostmortemCommands | None = None,
    handoff: HandoffCommands | None = None,
    reminders: ReminderCommands | None = None,
    people: Sightings | None = None,
) -> App:
    settings, engine = core.settings, core.engine
    app = OnceApp(
        # Named, or Bolt names it after the caller's file, from inspect.stack(): reading the
        # source of every frame cost a tenth of the bot's start. Not "incidentbot": Bolt sets
        # the level of the logger it names after the app, and that one is the parent of every
        # logger of the bot's own modules.
        name=BOLT_APP_NAME,
        engine=engine,
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,
        request_verification_enabled=signing_secret is not None,
        # Answer Slack only once a listener has returned: an event is recorded before Slack
        # hears it was received, so a crash in between means Slack retries, not a lost pin.
        # Listeners keep the slow part (opening a form) off the answer path themselves.
        process_before_response=True,
        ignoring_self_events_enabled=True,
        people=people,
    )
    handler = CommandHandler(core, runbooks, actions, postmortems, handoff)

    @app.command(settings.slack.command)
    def on_command(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        started = time.perf_counter()
        text = body.get("text") or ""
        sub = (text.split() or ["help"])[0].lower()[:20]
        reply = handler.handle(
            user_id=body["user_id"],
            channel_id=body["channel_id"],
            text=text,
            trigger_id=body.get("trigger_id", ""),
        )
        ack(**reply.body())
        elapsed = time.perf_counter() - started
        metrics.ack.labels("command").observe(elapsed)
        metrics.commands.labels(sub if sub.isalpha() else "other").observe(elapsed)
        if reply.open_modal:
            threading.Thread(
                target=_open_form, args=(client, body, reply.modal_args), daemon=True
            ).start()
        if reply.follow_up is not None:
            threading.Thread(
                target=_follow_up, args=(reply.follow_up, respond, body), daemon=True
            ).start()

    def _follow_up(work: Any, respond: Respond, body: dict[str, Any]) -> None:
        try:
            out: Reply = work()
        except Exception:
            log.exception("the rest of %r failed", (body.get("text") or "")[:40])
            out = Reply("That did not finish: an unexpected error (the bot's log has it).")
        try:  # through the response URL: it reaches the user wherever they typed it
            respond(
                text=out.text,
                response_type="in_channel" if out.in_channel else "ephemeral",
                replace_original=False,
            )
        except Exception as exc:
            log.info("could not tell %s how it ended: %s", body.get("user_id"), exc)

    def _open_form(client: WebClient, body: dict[str, Any], args: dict[str, Any]) -> None:
        if args.get("view"):  # a form the subcommand built (e.g. a postmortem section)
            try:
                client.views_open(trigger_id=body["trigger_id"], view=args["view"])
            except Exception as exc:
                log.warning("views.open failed: %s", exc)
                client.chat_postEphemeral(
                    channel=body["channel_id"], user=body["user_id"], text="The form did not open."
                )
            return
        if args.get("runbook") and runbooks is not None:
            _open_runbook_form(client, body, args["runbook"])
            return
        view = declare_view(
            settings,
            declarer=body["user_id"],
            severity=args.get("severity"),
            private=bool(args.get("private")),
        )
        view["private_metadata"] = body["channel_id"]
        try:
            client.views_open(trigger_id=body["trigger_id"], view=view)
        except Exception as exc:  # the form is a convenience; say why it did not open
            log.warning("views.open failed: %s", exc)
            client.chat_postEphemeral(
                channel=body["channel_id"],
                user=body["user_id"],
                text="The declare form could not open; use "
                f"`{settings.slack.command} declare [sev] &lt;title&gt;` instead.",
            )

    def _open_runbook_form(client: WebClient, body: dict[str, Any], name: str) -> None:
        assert runbooks is not None
        try:
            client.views_open(
                trigger_id=body["trigger_id"], view=runbooks.form(name, body["channel_id"])
            )
        except Exception as exc:
            log.warning("views.open failed for runbook %s: %s", name, exc)
            client.chat_postEphemeral(
                channel=body["channel_id"],
                user=body["user_id"],
                text=f"The form could not open; use `{settings.slack.command} run {name} "
                "name=value …` instead.",
            )

    @app.action(re.compile(r"^alerts_run"))
    def on_suggested_run(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        """A suggested runbook's Run button on an alerts message: the prefilled run form."""
        ack()
        user = body["user"]["id"]
        channel = str((body.get("container") or {}).get("channel_id") or "")
        try:
            wanted = json.loads(action.get("value") or "{}")
            name, params = str(wanted["runbook"]), dict(wanted.get("params") or {})
        except (ValueError, KeyError, TypeError):
            return
        if runbooks is None:
            return
        try:
            view = runbooks.suggested_form(user, name, params, channel)
            client.views_open(trigger_id=body["trigger_id"], view=view)
        except DomainError as exc:
            tell(respond, user, f":no_entry: {exc}")
        except Exception as exc:
            log.warning("views.open failed for suggested runbook %s: %s", name, exc)
            use = f"`{settings.slack.command} run {name}`"
            tell(respond, user, f"The form did not open; use {use}.")

    def tell(respond: Respond, user: str, message: str) -> None:
        try:  # through the response URL: only the clicker sees it
            respond(text=message, response_type="ephemeral", replace_original=False)
        except Exception as exc:
            log.info("could not tell %s: %s", user, exc)

    @app.action(re.compile(r"^runbook_"))
    def on_run_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        started = time.perf_counter()
        user = body["user"]["id"]
        try:
            run_id = int(action.get("value") or "")
        except ValueError:
            ack()
            return
        if runbooks is None:
            ack()
            return
        message = runbooks.button(action["action_id"], run_id, user).text
        ack()
        metrics.ack.labels("block_action").observe(time.perf_counter() - started)
        try:  # through the response URL: it reaches the clicker even outside the channel
            respond(text=message, response_type="ephemeral", replace_original=False)
        except Exception as exc:
            log.info("could not tell %s about run %s: %s", user, run_id, exc)

    def message_button(
        what: str, click: Callable[..., str | None] | None, *, with_action_id: bool = False
    ) -> Callable[..., None]:
        """A button on a message the bot posted by itself (handoff, reminder): the click is
        decided by ``click``; what it returns is shown to the clicker only."""

        def listener(
            ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
        ) -> None:
            started = time.perf_counter()
            ack()
            metrics.ack.labels("block_action").observe(time.perf_counter() - started)
            if click is None:
                return
            user = body["user"]["id"]
            container = body.get("container") or {}
            extra = {"action_id": str(action.get("action_id") or "")} if with_action_id else {}
            message = click(
                user=user,
                value=str(action.get("value") or ""),
                channel_id=str(container.get("channel_id") or ""),
                message_ts=str(container.get("message_ts") or ""),
                message=body.get("message"),
                **extra,
            )
            if message is None:
                return
            try:  # only the clicker sees why nothing changed
                respond(text=message, response_type="ephemeral", replace_original=False)
            except Exception as exc:
                log.info("could not tell %s about the %s: %s", user, what, exc)

        return listener

    app.action(HANDOFF_BUTTON)(message_button("handoff", handoff.click if handoff else None))
    on_reminder = message_button(
        "reminder", reminders.click if reminders else None, with_action_id=True
    )
    app.action(SNOOZE_ACTION)(on_reminder)
    app.action(DISMISS_ACTION)(on_reminder)
    app.action(PAGERDUTY_RESOLVE)(message_button("resolve", resolve_click(core)))

    def form_submitted(
        submit: Any, ack: Ack, body: dict[str, Any], view: dict[str, Any], what: str
    ) -> None:
        """A form that answers with field errors, or closes and confirms to the submitter
        (ephemerally, in the channel the form was opened from)."""
        user = body["user"]["id"]
        errors, reply, channel = submit(user, view)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        if reply is not None and channel:
            _confirm(app.client, channel, user, reply.text, what)

    @app.view(FORM_CALLBACK)
    def on_runbook_form(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        assert runbooks is not None
        form_submitted(runbooks.submit_form, ack, body, view, "run")

    postmortem_views.register(app, core, postmortems, form_submitted)

    @app.view(CALLBACK_ID)
    def on_declare_form(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient
    ) -> None:
        started = time.perf_counter()
        user = body["user"]["id"]
        args = read_submission(settings, view["state"]["values"])
        try:
            reply = handler.declare(user, key=f"slack:view:{view['id']}", **args)
        except DomainError as exc:
            message = str(exc)
            ack(response_action="errors", errors=field_errors(settings, message))
            return
        ack()
        metrics.ack.labels("view_submission").observe(time.perf_counter() - started)
        _confirm(client, view.get("private_metadata") or user, user, reply.text, "declare")

    @app.event("reaction_added")
    def on_reaction(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        if actions is not None and event.get("reaction") == settings.action_items.reaction:
            _action_from_reaction(event, client)
        if event.get("reaction") != settings.slack.pin_reaction:
            return
        item = event.get("item") or {}
        if item.get("type") != "message":
            return
        channel, ts = item.get("channel", ""), item.get("ts", "")
        with db.transaction(engine) as s:
            incident = svc.get_by_channel(s, channel)
        if incident is None:
            return
        message = _fetch_message(client, channel, ts)
        if message is None:
            log.info("pinned message %s/%s is gone; not recorded", channel, ts)
            return
        author = message.get("user") or message.get("bot_id") or "unknown"
        at = datetime.fromtimestamp(float(ts), UTC)
        try:
            with db.transaction(engine) as s:
                svc.add_note(
                    s,
                    settings,
                    incident.ref,
                    message.get("text") or "(no text)",
                    actor=author,
                    occurred_at=at,
                    kind="timeline.pinned",
                    source_key=f"pin:{channel}:{ts}",
                )
        except IntegrityError:
            log.debug("message %s/%s already on the timeline", channel, ts)

    def _action_from_reaction(event: dict[str, Any], client: WebClient) -> None:
        """The reacted-to message becomes an action item, once; the reactor creates it."""
        assert actions is not None
        item = event.get("item") or {}
        if item.get("type") != "message":
            return
        channel, ts = item.get("channel", ""), item.get("ts", "")
        with db.transaction(engine) as s:
            incident = svc.get_by_channel(s, channel)
        if incident is None or actions.already_from(channel, ts):
            return
        message = _fetch_message(client, channel, ts)
        if message is None:
            log.info("message %s/%s is gone; no action item made", channel, ts)
            return
        reactor = event.get("user") or "unknown"
        out = actions.from_reaction(
            incident=incident,
            channel=channel,
            ts=ts,
            text=message.get("text") or "",
            author=message.get("user") or message.get("bot_id") or "unknown",
            reactor=reactor,
        )
        if out is None:
            return
        try:
            client.chat_postEphemeral(channel=channel, user=reactor, text=out.text)
        except Exception as exc:
            log.info("could not confirm the action item to %s: %s", reactor, exc)

    @app.event("member_joined_channel")
    def on_join(body: dict[str, Any], event: dict[str, Any]) -> None:
        with db.transaction(engine) as s:
            incident = svc.get_by_channel(s, event.get("channel", ""))
        if incident is None:
            return
        user = event.get("user", "")
        try:
            with db.transaction(engine) as s:
                svc.record(
                    s,
                    svc.get(s, incident.ref),
                    "participant.joined",
                    user,
                    f"{user} joined the channel",
                    now=datetime.now(UTC),
                    data={"people": [user]},
                    source_key=f"event:{body.get('event_id')}",
                )
        except IntegrityError:
            log.debug("event %s already recorded", body.get("event_id"))

    @app.event("message")
    def on_message(body: dict[str, Any]) -> None:
        """Messages are read only when pinned; acknowledging here keeps Bolt quiet."""

    return app


def _confirm(client: WebClient, channel: str, user: str, text: str, what: str) -> None:
    """Tell ``user`` (only them) how their form ended, once the form's answer is out: Bolt
    answers Slack only when the listener returns, and a Slack call there would hold the ack
    (as would a thread that calls Slack while the answer is being sent)."""

    def post() -> None:
        priority.after_urgent(CONFIRM_AFTER_S)
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
        except Exception as exc:
            log.info("could not confirm the %s to %s: %s", what, user, exc)

    threading.Thread(target=post, name="form-confirmation", daemon=True).start()


def _fetch_message(client: WebClient, channel: str, ts: str) -> dict[str, Any] | None:
    data = client.conversations_history(channel=channel, latest=ts, inclusive=True, limit=1)
    for message in data.get("messages") or []:
        if message.get("ts") == ts:
            return dict(message)
    return None
