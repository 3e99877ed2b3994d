"""Wiring the durable effects the use cases queue to what carries them out: the Slack and
PagerDuty adapters, their ledger actions, the runbook runtime and the run messages.

``serve`` (through :class:`incidentbot.bot.Bot`) and ``worker`` install the same
(:class:`Effects`), so an effect queued from any door runs in either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from incidentbot import run_links
from incidentbot.alerts.messages import AlertMessages
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.archive import ArchiveActions
from incidentbot.incidents.effects import refresh
from incidentbot.incidents.flows import ChatActions
from incidentbot.ledger import events
from incidentbot.ledger.actions import registry as action_registry
from incidentbot.paging.config import parse_routing_keys
from incidentbot.paging.links import AskActions
from incidentbot.paging.pager_actions import PagerActions
from incidentbot.runbooks import runtime as runbook_runtime
from incidentbot.runbooks.messages import RunMessages
from incidentbot.slack import alert_blocks, blocks, runbook_blocks
from incidentbot.slack.chat import SlackChat
from incidentbot.slack.connections import SlackConnections, pool_size

if TYPE_CHECKING:  # imported only when paging is configured
    from incidentbot.pagerduty_adapter import PagerDutyPager


@dataclass
class Effects:
    """What carries out the durable effects the use cases queue: the Slack and PagerDuty
    adapters, their ledger actions, the runbook runtime and the run messages. ``serve`` and
    ``worker`` install the same, so an effect queued from any door runs in either."""

    chat: SlackChat
    pager: PagerDutyPager | None
    run_messages: RunMessages
    page_key: bytes
    unsubscribe: Callable[[], None]

    @classmethod
    def install(
        cls,
        settings: Settings,
        engine: Engine,
        *,
        token: str,
        observer: Callable[..., None] | None = None,
    ) -> Effects:
        connections = SlackConnections(pool_size(settings.workers))
        chat = SlackChat(
            token, base_url=settings.slack.api_url, observer=observer, connections=connections
        )
        actions = ChatActions(chat, engine, settings, blocks)
        actions.install(action_registry)
        AlertMessages(
            chat, engine, settings, alert_blocks.alert_group, alert_blocks.block_id
        ).install(action_registry)
        ArchiveActions(chat, engine, settings, blocks).install(action_registry)
        pager, pager_actions = _paging(settings, engine, chat)
        page_key = run_links.signing_key(token)
        public = settings.http.public_url
        run_messages = RunMessages(
            engine,
            chat,
            runbook_blocks.run_message,
            runbook_blocks.block_id,
            link=(lambda rid: run_links.link(public, page_key, rid))
            if public
            else (lambda rid: None),
        )
        runbook_runtime.install(engine, settings, chat=chat, announce=run_messages.announce)
        subscriptions = [
            events.subscribe(actions.on_ledger_event),
            events.subscribe(run_messages.on_ledger_event),
        ]
        if pager_actions is not None:
            subscriptions.append(events.subscribe(pager_actions.on_ledger_event))

        def unsubscribe() -> None:
            for fn in subscriptions:
                fn()

        return cls(chat, pager, run_messages, page_key, unsubscribe)

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> Effects | None:
        """For ``incidentbot worker``: the effects when Slack is configured, else None."""
        if settings.slack_bot_token is None:
            return None
        return cls.install(settings, engine, token=settings.slack_bot_token.get_secret_value())


def refresh_header(session: Any, incident: Any) -> None:
    refresh(session, incident, actor="incidentbot", reason="page", digest=False)


def _paging(
    settings: Settings, engine: Engine, chat: SlackChat
) -> tuple[PagerDutyPager | None, PagerActions | None]:
    """The PagerDuty adapter and its actions, when paging is configured."""
    pd = settings.pagerduty
    if not pd.enabled:
        return None, None
    from incidentbot.pagerduty_adapter import PagerDutyPager

    token = required_secret(settings.pagerduty_api_token, "INCIDENTBOT_PAGERDUTY_API_TOKEN")
    if not pd.from_email:
        raise DomainError("pagerduty.from_email is not set: PagerDuty needs it to open incidents")
    secret = settings.pagerduty_routing_keys
    try:
        routing_keys = parse_routing_keys(
            secret.get_secret_value() if secret else None, pd.services
        )
    except ValueError as exc:
        raise DomainError(str(exc)) from None
    pager = PagerDutyPager(
        token,
        from_email=pd.from_email,
        base_url=pd.api_url,
        ca_file=pd.ca_file,
        events_url=pd.events_url,
    )
    actions = PagerActions(
        pager, engine, settings, chat=chat, on_change=refresh_header, routing_keys=routing_keys
    )
    actions.install(action_registry)
    AskActions(engine, chat).install(action_registry)
    return pager, actions


def required_secret(value: Any, env: str) -> str:
    if value is None or not value.get_secret_value():
        raise DomainError(f"{env} is not set: the bot needs it to talk to Slack")
    return str(value.get_secret_value())
