"""Bolt wiring: the /incident command, the buttons and the forms (the events we listen to are
in :mod:`incidentbot.slack.events`).

Listeners stay thin: they time the request, hand it to :class:`CommandHandler` or the button's
handler (which records what the command or click means), acknowledge, and hand every Slack call
they make to :mod:`incidentbot.slack.after_answer`: the reply through the response URL, the
ephemeral confirmation, ``views.open`` and the clicked message updated are made once Slack has
the answer, so the ack never waits for a round trip to Slack.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from incidentbot.chat_text import mrkdwn
from incidentbot.errors import DomainError
from incidentbot.metrics import Metrics
from incidentbot.paging.links import RESOLVE_BUTTON as PAGERDUTY_RESOLVE
from incidentbot.people.lookup import Sightings
from incidentbot.slack import after_answer, events, postmortem_views
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
        # The HTTP door verifies each request's signature before Bolt sees it, once
        # (incidentbot.web.slack_edge: the only door that hands Bolt HTTP requests); Socket
        # Mode has none to verify.
        request_verification_enabled=False,
        # Answer Slack only once a listener has returned: an event is recorded before Slack
        # hears it was received, so a crash in between means Slack retries, not a lost pin.
        # Listeners make their Slack calls after the answer (after_answer.then).
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
            args = reply.modal_args
            after_answer.then("views.open", lambda: _open_form(client, body, args), at_once=True)
        follow_up = reply.follow_up
        if follow_up is not None:
            after_answer.then(
                "the rest of the command", lambda: _follow_up(follow_up, respond, body)
            )

    def _follow_up(work: Callable[[], Reply], respond: Respond, body: dict[str, Any]) -> None:
        try:
            out = work()
        except Exception:
            log.exception("the rest of %r failed", (body.get("text") or "")[:40])
            out = Reply("That did not finish: an unexpected error (the bot's log has it).")
        # Through the response URL: it reaches the user wherever they typed it.
        _respond(respond, out.text, in_channel=out.in_channel)

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
                text=f"The form could not open; use `{settings.slack.command} run {mrkdwn(name)} "
                "name=value …` instead.",
            )

    @app.action(re.compile(r"^alerts_run"))
    def on_suggested_run(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        """A suggested runbook's Run button on an alerts message: the prefilled run form, built
        and opened once Slack has the answer (a click records nothing)."""
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

        def open_form() -> None:
            try:
                view = runbooks.suggested_form(user, name, params, channel)
            except DomainError as exc:
                _respond(respond, f":no_entry: {mrkdwn(str(exc))}")
                return
            try:
                client.views_open(trigger_id=body["trigger_id"], view=view)
            except Exception as exc:
                log.warning("views.open failed for suggested runbook %s: %s", name, exc)
                use = f"`{settings.slack.command} run {mrkdwn(name)}`"
                _respond(respond, f"The form did not open; use {use}.")

        after_answer.then("the suggested run form", open_form, at_once=True)

    def tell(respond: Respond, what: str, message: str) -> None:
        """``message`` to the clicker only (through the response URL: it reaches them even
        outside the channel), once Slack has the answer."""
        after_answer.then(what, lambda: _respond(respond, message))

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
        message = runbooks.button(action["action_id"], run_id, user).text  # recorded
        ack()
        metrics.ack.labels("block_action").observe(time.perf_counter() - started)
        tell(respond, f"the reply about run {run_id}", message)

    def message_button(
        what: str, click: Callable[..., str | None] | None, *, with_action_id: bool = False
    ) -> Callable[..., None]:
        """A button on a message the bot posted by itself (handoff, reminder): the click is
        decided by ``click``; what it returns is shown to the clicker only."""

        def listener(
            ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
        ) -> None:
            started = time.perf_counter()
            if click is None:
                ack()
                return
            user = body["user"]["id"]
            container = body.get("container") or {}
            extra = {"action_id": str(action.get("action_id") or "")} if with_action_id else {}
            message = click(  # recorded here; its Slack calls wait for the answer
                user=user,
                value=str(action.get("value") or ""),
                channel_id=str(container.get("channel_id") or ""),
                message_ts=str(container.get("message_ts") or ""),
                message=body.get("message"),
                **extra,
            )
            ack()
            metrics.ack.labels("block_action").observe(time.perf_counter() - started)
            if message is not None:  # only the clicker sees why nothing changed
                tell(respond, f"the reply about the {what}", message)

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

    events.register(app, core, actions)
    return app


def _confirm(client: WebClient, channel: str, user: str, text: str, what: str) -> None:
    """Tell ``user`` (only them) how their form ended, once the form's answer is out."""
    after_answer.then(
        f"the {what} confirmation",
        lambda: client.chat_postEphemeral(channel=channel, user=user, text=text),
    )


def _respond(respond: Respond, text: str, *, in_channel: bool = False) -> None:
    """A message through the request's response URL; a refusal raises (Bolt's ``respond``
    only returns it), so that it is logged as a failure."""
    sent = respond(
        text=text,
        response_type="in_channel" if in_channel else "ephemeral",
        replace_original=False,
    )
    status = getattr(sent, "status_code", 200)
    if status >= 300:
        raise RuntimeError(f"the response URL answered {status}")
