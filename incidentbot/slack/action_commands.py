"""``/incident action …`` and the :ballot_box_with_check: reaction: action items from Slack.

Plain Python like :mod:`incidentbot.slack.commands`: the Bolt listener hands over what Slack
sent and acknowledges with the :class:`ActionReply`. In an incident's channel every operation
works on that incident's items (an id of another incident's item is refused); elsewhere only
``action list`` works, and lists the open items you own. A mentioned owner is checked with
Slack (``users.info``) before anything is written. Every change and its timeline event commit
together; a refusal changes nothing.

Exporting to GitHub may take longer than Slack waits for an answer, so it is checked at once
and then done after the acknowledgement (``follow_up``); its outcome comes back through the
command's response URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from incidentbot import db
from incidentbot.action_items import github
from incidentbot.action_items import service as items
from incidentbot.chat_text import mention_tokens, mrkdwn, mrkdwn_keeping
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ports import Chat, ExternalError
from incidentbot.slack.action_grammar import CHANNEL_ONLY, HELP, USAGES
from incidentbot.slack.blocks import user_ref

log = logging.getLogger(__name__)

MAX_LINES = 40


@dataclass
class ActionReply:
    text: str
    in_channel: bool = False
    # Work to do after Slack has its answer; returns what to tell the user then.
    follow_up: Callable[[], ActionReply] | None = None


class ActionCommands:
    def __init__(self, settings: Settings, engine: Engine, chat: Chat | None):
        self.settings = settings
        self.engine = engine
        self.chat = chat

    # -- /incident action ------------------------------------------------------------------------

    def handle(self, args: dict[str, Any], *, user: str, incident: Incident | None) -> ActionReply:
        op = args["op"]
        if op == "help":
            return ActionReply(self.help())
        if op in CHANNEL_ONLY and incident is None:
            return ActionReply(
                f"`/incident action {op}` only works in an incident's channel.\n"
                f"Usage: {mrkdwn(USAGES[op])} (run it in the incident's channel)"
            )
        try:
            return self._do(op, args, user, incident)
        except DomainError as exc:
            # The message may quote what was typed; only the owner it names stays a mention.
            message = mrkdwn_keeping(str(exc), mention_tokens([args.get("owner")]))
            return ActionReply(f"{message[:1].upper()}{message[1:]}.\nUsage: {mrkdwn(USAGES[op])}")

    def help(self) -> str:
        lines = [f"• `{mrkdwn(USAGES[op])}`: {HELP[op]}" for op in USAGES]
        return (
            "*Action items*\n" + "\n".join(lines) + "\nReact to a message in an incident's "
            f"channel with :{self.settings.action_items.reaction}: to make it an action item."
        )

    def _do(self, op: str, args: dict[str, Any], user: str, inc: Incident | None) -> ActionReply:
        if op == "list":
            if inc is None or args.get("mine"):
                return self._mine(user)
            return self._list(inc)
        assert inc is not None
        st, who = self.settings, f"<@{user}>"
        if op in ("add", "assign") and args.get("owner"):
            self._check_user(args["owner"])
        if op == "export":
            return self._export(args["id"], user, inc)
        with db.transaction(self.engine) as s:
            inc = svc.get(s, inc.ref)
            if op == "add":
                item = items.add(
                    s,
                    st,
                    inc,
                    args["text"],
                    actor=user,
                    owner=args["owner"],
                    due=args["due"],
                    priority=args["priority"],
                )
                return ActionReply(
                    f":ballot_box_with_check: {who} added action item *#{item.id}*: {_shown(item)}"
                    f"\n{_details(item)}",
                    in_channel=True,
                )
            if op == "assign":
                item = items.assign(s, st, args["id"], args["owner"], actor=user, incident=inc)
                return ActionReply(
                    f"{who} assigned action item *#{item.id}* to <@{item.owner}>: {_shown(item)}",
                    in_channel=True,
                )
            if op == "done":
                item = items.done(s, st, args["id"], actor=user, incident=inc)
                return ActionReply(
                    f":white_check_mark: {who} marked action item *#{item.id}* done: "
                    + _shown(item),
                    in_channel=True,
                )
            if op == "wontdo":
                item = items.wont_do(s, st, args["id"], args["reason"], actor=user, incident=inc)
                return ActionReply(
                    f"{who} closed action item *#{item.id}* as won't do: {_shown(item)}\n"
                    f"Reason: {mrkdwn(item.status_reason)}",
                    in_channel=True,
                )
            if op == "reopen":
                item = items.reopen(s, st, args["id"], actor=user, incident=inc)
                return ActionReply(
                    f"{who} reopened action item *#{item.id}*: {_shown(item)}", in_channel=True
                )
        raise DomainError(f"`action {op}` is not handled here")

    def _check_user(self, user_id: str) -> None:
        """The owner must be a person in this workspace: asked of Slack, not assumed."""
        if self.chat is None:
            raise DomainError("owners cannot be checked here (no Slack connection)")
        try:
            info = self.chat.user_info(user_id)
        except ExternalError as exc:
            raise DomainError(
                f"could not check {user_id} with Slack ({exc.code}); try again"
            ) from None
        if info is None:
            raise DomainError(
                f"{user_id} is not a user in this Slack workspace: mention someone who is"
            )
        if info.deleted:
            raise DomainError(f"<@{user_id}> is deactivated: give the item to someone active")
        if info.is_bot:
            raise DomainError(f"<@{user_id}> is a bot: give the item to a person")

    def _list(self, inc: Incident) -> ActionReply:
        with db.transaction(self.engine) as s:
            views = items.list_items(s, self.settings, incident=inc, status=None)
        if not views:
            return ActionReply(
                f"{inc.ref} has no action items yet: `/incident action add <text>` or react "
                f"to a message with :{self.settings.action_items.reaction}:."
            )
        open_ = [v for v in views if v.item.status == items.OPEN]
        late = sum(1 for v in open_ if v.overdue)
        head = f"*{inc.ref} action items* ({len(open_)} open" + (
            f", {late} overdue)" if late else ")"
        )
        return ActionReply(_lines(head, views, with_incident=False))

    def _mine(self, user: str) -> ActionReply:
        with db.transaction(self.engine) as s:
            views = items.list_items(s, self.settings, owner=user, status=items.OPEN)
        if not views:
            return ActionReply("You own no open action items. :tada:")
        late = sum(1 for v in views if v.overdue)
        head = f"*Your open action items* ({len(views)}" + (f", {late} overdue)" if late else ")")
        return ActionReply(_lines(head, views, with_incident=True))

    def _export(self, item_id: int, user: str, inc: Incident) -> ActionReply:
        with db.transaction(self.engine) as s:
            draft = github.prepare(s, self.settings, item_id, incident=svc.get(s, inc.ref))
        if isinstance(draft, github.Exported):
            return ActionReply(f"Action item *#{draft.item_id}* is already on GitHub: {draft.url}")

        def follow_up() -> ActionReply:
            try:
                done = github.export(
                    self.engine, self.settings, draft.item_id, actor=user, incident=inc
                )
            except DomainError as exc:
                message = str(exc)
                return ActionReply(
                    f"Action item *#{draft.item_id}* was not exported: {mrkdwn(message)}."
                )
            if not done.created:
                return ActionReply(
                    f"Action item *#{done.item_id}* is already on GitHub: {done.url}"
                )
            return ActionReply(
                f"<@{user}> exported action item *#{done.item_id}* to GitHub: {done.url}",
                in_channel=True,
            )

        return ActionReply(
            f"Opening action item *#{draft.item_id}* as a GitHub issue in "
            f"{self.settings.action_items.github_repo}…",
            follow_up=follow_up,
        )

    # -- the reaction ----------------------------------------------------------------------------

    def from_reaction(
        self,
        *,
        incident: Incident,
        channel: str,
        ts: str,
        text: str,
        author: str,
        reactor: str,
        now: datetime | None = None,
    ) -> ActionReply | None:
        """Make the message an action item of the incident, once; None if it already is one."""
        key = source_key(channel, ts)
        clean = " ".join(text.split())
        if not clean:
            return ActionReply("That message has no text, so it did not become an action item.")
        if len(clean) > items.MAX_TEXT:
            clean = clean[: items.MAX_TEXT - 1] + "…"
        try:
            with db.transaction(self.engine) as s:
                if items.find_by_source(s, key) is not None:
                    return None
                item = items.add(
                    s,
                    self.settings,
                    svc.get(s, incident.ref),
                    clean,
                    actor=reactor,
                    source_key=key,
                    now=now,
                    data={"message_author": author, "message_ts": ts},
                )
        except IntegrityError:  # the same reaction delivered twice at once
            return None
        return ActionReply(
            f"Action item *#{item.id}* added to {incident.ref} from that message. "
            f"Give it an owner: `/incident action assign {item.id} @someone`."
        )

    def already_from(self, channel: str, ts: str) -> bool:
        with db.transaction(self.engine) as s:
            return items.find_by_source(s, source_key(channel, ts)) is not None


def source_key(channel: str, ts: str) -> str:
    return f"reaction:{channel}:{ts}"


def _shown(item: Any) -> str:
    """An item's text as typed, never markup."""
    return mrkdwn(item.text)


def _details(item: Any) -> str:
    parts = [
        f"owner {user_ref(item.owner)}" if item.owner else "no owner",
        f"due {item.due_date.isoformat()}" if item.due_date else "no due date",
        f"{item.priority} priority",
    ]
    return " · ".join(parts)


def _lines(head: str, views: list[items.ItemView], *, with_incident: bool) -> str:
    lines = [head]
    for v in views[:MAX_LINES]:
        i = v.item
        where = f"{v.incident_ref} · " if with_incident else ""
        state = ""
        if i.status == items.DONE:
            state = " · done"
        elif i.status == items.WONT_DO:
            state = f" · won't do: {mrkdwn(i.status_reason)}"
        elif v.overdue:
            state = " · :warning: *overdue*"
        issue = f" · <{i.external_url}|issue>" if i.external_url else ""
        text = f"~{mrkdwn(i.text)}~" if i.status != items.OPEN else mrkdwn(i.text)
        lines.append(f"• *#{i.id}* {where}{text} · {_details(i)}{state}{issue}")
    if len(views) > MAX_LINES:
        lines.append(f"… and {len(views) - MAX_LINES} more: `incidentbot actions list`")
    return "\n".join(lines)
