"""``/incident action …`` and the :ballot_box_with_check: reaction: action items from Slack.

Plain Python like :mod:`incidentbot.slack.commands`: the Bolt listener hands over what Slack
sent (parsed by :func:`incidentbot.slack.action_grammar.parse_action`), :meth:`ActionCommands.
handle` calls the use case in :mod:`incidentbot.usecases.action_items` and answers with a
:class:`~incidentbot.slack.reply.Reply`. In an incident's channel every operation
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
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from incidentbot import db
from incidentbot.action_items import fields as item_fields
from incidentbot.action_items import github
from incidentbot.action_items import service as items
from incidentbot.chat_text import mention, mrkdwn, mrkdwn_people
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.ports import Chat, ExternalError
from incidentbot.slack.action_grammar import CHANNEL_ONLY, HELP, USAGES
from incidentbot.slack.action_grammar import parse_action as parse
from incidentbot.slack.reply import Reply
from incidentbot.usecases import action_items as uc
from incidentbot.usecases.core import Actor, Core

__all__ = ["ActionCommands", "parse", "source_key"]

log = logging.getLogger(__name__)

MAX_LINES = 40
_FIELD_NAMES = {"due": "due date", "priority": "priority", "text": "text"}


class ActionCommands:
    def __init__(
        self, settings: Settings, engine: Engine, chat: Chat | None, core: Core | None = None
    ):
        self.settings = settings
        self.engine = engine
        self.chat = chat
        self.core = core or Core(settings, engine)

    # -- /incident action ------------------------------------------------------------------------

    def handle(self, args: dict[str, Any], *, user: str, incident: Incident | None) -> Reply:
        """One ``/incident action …`` (``args`` from :func:`parse`), answered."""
        op = args["op"]
        if op == "help":
            return Reply(self.help())
        if op in CHANNEL_ONLY and incident is None:
            return Reply(
                f"`/incident action {op}` only works in an incident's channel.\n"
                f"Usage: {mrkdwn(USAGES[op])} (run it in the incident's channel)"
            )
        try:
            return self._do(op, args, user, incident)
        except DomainError as exc:
            # The message may quote what was typed; only the owner it names stays a mention.
            message = mrkdwn_people(str(exc), exc.people)
            return Reply(f"{message[:1].upper()}{message[1:]}.\nUsage: {mrkdwn(USAGES[op])}")

    def help(self) -> str:
        lines = [f"• `{mrkdwn(USAGES[op])}`: {HELP[op]}" for op in USAGES]
        return (
            "*Action items*\n" + "\n".join(lines) + "\nReact to a message in an incident's "
            f"channel with :{self.settings.action_items.reaction}: to make it an action item."
        )

    def _do(self, op: str, args: dict[str, Any], user: str, inc: Incident | None) -> Reply:
        if op == "list":
            if inc is None or args.get("mine"):
                return self._mine(user)
            return self._list(inc)
        assert inc is not None
        core, actor, who, ref = self.core, Actor(user, "slack"), f"<@{user}>", inc.ref
        if op in ("add", "assign") and args.get("owner"):
            self._check_user(args["owner"])
        if op == "export":
            return self._export(args["id"], actor, ref)
        if op == "add":
            item = uc.add(core, actor, ref, args["text"], owner=args["owner"], due=args["due"],
                          priority=args["priority"])  # fmt: skip
            assert item is not None
            return Reply(
                f":ballot_box_with_check: {who} added action item *#{item.id}*: {_shown(item)}"
                f"\n{_details(item)}",
                in_channel=True,
            )
        if op == "edit":
            changes = {args["field"]: args["value"]}
            edited = uc.edit(core, actor, args["id"], changes, incident=ref)
            return Reply(_edited(who, edited), in_channel=True)
        if op == "assign":
            item = uc.assign(core, actor, args["id"], args["owner"], incident=ref)
            return Reply(
                f"{who} assigned action item *#{item.id}* to <@{item.owner}>: {_shown(item)}",
                in_channel=True,
            )
        if op == "done":
            item = uc.done(core, actor, args["id"], incident=ref)
            return Reply(
                f":white_check_mark: {who} marked action item *#{item.id}* done: {_shown(item)}",
                in_channel=True,
            )
        if op == "wontdo":
            item = uc.wont_do(core, actor, args["id"], args["reason"], incident=ref)
            return Reply(
                f"{who} closed action item *#{item.id}* as won't do: {_shown(item)}\n"
                f"Reason: {mrkdwn(item.status_reason)}",
                in_channel=True,
            )
        if op == "reopen":
            item = uc.reopen(core, actor, args["id"], incident=ref)
            return Reply(
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
            raise DomainError(
                f"{user_id} is deactivated: give the item to someone active", people=[user_id]
            )
        if info.is_bot:
            raise DomainError(f"{user_id} is a bot: give the item to a person", people=[user_id])

    def _list(self, inc: Incident) -> Reply:
        with db.transaction(self.engine) as s:
            views = items.list_items(s, self.settings, incident=inc, status=None)
        if not views:
            return Reply(
                f"{inc.ref} has no action items yet: `/incident action add <text>` or react "
                f"to a message with :{self.settings.action_items.reaction}:."
            )
        open_ = [v for v in views if v.item.status == item_fields.OPEN]
        late = sum(1 for v in open_ if v.overdue)
        head = f"*{inc.ref} action items* ({len(open_)} open" + (
            f", {late} overdue)" if late else ")"
        )
        return Reply(_lines(head, views, with_incident=False))

    def _mine(self, user: str) -> Reply:
        with db.transaction(self.engine) as s:
            views = items.list_items(s, self.settings, owner=user, status=item_fields.OPEN)
        if not views:
            return Reply("You own no open action items. :tada:")
        late = sum(1 for v in views if v.overdue)
        head = f"*Your open action items* ({len(views)}" + (f", {late} overdue)" if late else ")")
        return Reply(_lines(head, views, with_incident=True))

    def _export(self, item_id: int, actor: Actor, ref: str) -> Reply:
        ready = uc.check_export(self.core, actor, item_id, incident=ref)
        if isinstance(ready, github.Exported):
            return Reply(f"Action item *#{ready.item_id}* is already on GitHub: {ready.url}")

        def follow_up() -> Reply:
            try:
                done = uc.export(self.core, actor, ready.item_id, incident=ref)
            except DomainError as exc:
                return Reply(f"Action item *#{ready.item_id}* was not exported: {mrkdwn(exc)}.")
            if not done.created:
                return Reply(f"Action item *#{done.item_id}* is already on GitHub: {done.url}")
            return Reply(
                f"<@{actor.id}> exported action item *#{done.item_id}* to GitHub: {done.url}",
                in_channel=True,
            )

        return Reply(
            f"Opening action item *#{ready.item_id}* as a GitHub issue in {ready.repo}…",
            follow_up=follow_up,
        )

    # -- the reaction ----------------------------------------------------------------------------

    def from_reaction(
        self, *, incident: Incident, channel: str, ts: str, text: str, author: str, reactor: str
    ) -> Reply | None:
        """Make the message an action item of the incident, once; None if it already is one."""
        clean = " ".join(text.split())
        if not clean:
            return Reply("That message has no text, so it did not become an action item.")
        if len(clean) > item_fields.MAX_TEXT:
            clean = clean[: item_fields.MAX_TEXT - 1] + "…"
        try:
            item = uc.add(self.core, Actor(reactor, "slack"), incident.ref, clean,
                          source_key=source_key(channel, ts),
                          data={"message_author": author, "message_ts": ts})  # fmt: skip
        except IntegrityError:  # the same reaction delivered twice at once
            return None
        if item is None:
            return None
        return Reply(
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


def _edited(who: str, edited: uc.ItemEdited) -> str:
    item, change = edited.item, edited.changes[0]
    if change.field == "text":
        return (
            f"{who} changed the text of action item *#{item.id}*: {_shown(item)}\n"
            f"Was: {mrkdwn(change.old)}"
        )
    unset = "no due date" if change.field == "due" else "none"
    return (
        f"{who} changed the {_FIELD_NAMES[change.field]} of action item *#{item.id}* to "
        f"*{change.new or unset}* (was {change.old or unset}): {_shown(item)}"
    )


def _details(item: Any) -> str:
    due = item.due if isinstance(item, uc.Item) else item.due_date
    parts = [
        f"owner {mention(item.owner)}" if item.owner else "no owner",
        f"due {due.isoformat()}" if due else "no due date",
        f"{item.priority} priority",
    ]
    return " · ".join(parts)


def _lines(head: str, views: list[items.ItemView], *, with_incident: bool) -> str:
    lines = [head]
    for v in views[:MAX_LINES]:
        i = v.item
        where = f"{v.incident_ref} · " if with_incident else ""
        state = ""
        if i.status == item_fields.DONE:
            state = " · done"
        elif i.status == item_fields.WONT_DO:
            state = f" · won't do: {mrkdwn(i.status_reason)}"
        elif v.overdue:
            state = f" · :warning: *{v.overdue_text}*"
        issue = f" · <{i.external_url}|issue>" if i.external_url else ""
        text = f"~{mrkdwn(i.text)}~" if i.status != item_fields.OPEN else mrkdwn(i.text)
        lines.append(f"• *#{i.id}* {where}{text} · {_details(i)}{state}{issue}")
    if len(views) > MAX_LINES:
        lines.append(f"… and {len(views) - MAX_LINES} more: `incidentbot actions list`")
    return "\n".join(lines)
