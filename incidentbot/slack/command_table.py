"""The one table of ``/incident`` subcommands.

For each subcommand: its name, aliases, usage, where it may be used, its help line, the parser
of its arguments and the handler that calls the core. The grammar
(:func:`incidentbot.slack.grammar.parse`), :func:`help_text` and the dispatch in
:class:`~incidentbot.slack.commands.CommandHandler` all read it, so adding a subcommand is one
entry here plus one use case (and its handler).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from incidentbot.chat_text import mrkdwn
from incidentbot.config import Settings
from incidentbot.slack import command_parsers as p
from incidentbot.slack import incident_commands as h
from incidentbot.slack.action_grammar import USAGE as ACTION_USAGE
from incidentbot.slack.command_parsers import Command, Usage
from incidentbot.slack.incident_commands import Call
from incidentbot.slack.postmortem_commands import USAGE as POSTMORTEM_USAGE
from incidentbot.slack.reply import Reply

Parser = Callable[[str, str, Settings, str], Command | Usage]
Handler = Callable[[Call, dict[str, Any]], Reply]


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    help: str
    parser: Parser
    handler: Handler
    # True: only in an incident's channel (the grammar refuses it elsewhere).
    channel_only: bool = False
    aliases: tuple[str, ...] = ()


def _help(call: Call, args: dict[str, Any]) -> Reply:
    return Reply(help_text(in_incident_channel=call.incident is not None))


def _sub(
    name: str,
    usage: str,
    help: str,
    parser: Parser,
    handler: Handler,
    *,
    channel: bool = False,
    aliases: tuple[str, ...] = (),
) -> Subcommand:
    return Subcommand(name, usage, help, parser, handler, channel, aliases)


TABLE: tuple[Subcommand, ...] = (
    _sub(
        "declare",
        "/incident declare [sev1..sev4] <title>",
        "declare an incident (no title opens a form)",
        p.declare,
        h.declare,
        aliases=("open", "new"),
    ),
    _sub("list", "/incident list", "list open incidents", p.no_args, h.list_open, aliases=("ls",)),
    _sub(
        "sev",
        "/incident sev <1-4>",
        "change the severity",
        p.one_word,
        h.sev,
        channel=True,
        aliases=("severity",),
    ),
    _sub(
        "status",
        "/incident status <status>",
        "change the status",
        p.one_word,
        h.status,
        channel=True,
    ),
    _sub(
        "field",
        "/incident field <name> <value|--clear>",
        "set or clear a field",
        p.field,
        h.field,
        channel=True,
    ),
    _sub(
        "assign",
        "/incident assign <role> @user",
        "give someone a role",
        p.assign,
        h.assign,
        channel=True,
    ),
    _sub(
        "unassign",
        "/incident unassign <role>",
        "take a role back",
        p.unassign,
        h.unassign,
        channel=True,
    ),
    _sub("roles", "/incident roles", "who holds which role", p.no_args, h.roles, channel=True),
    _sub(
        "note",
        "/incident note <text>",
        "add a note to the timeline",
        p.free_text,
        h.note,
        channel=True,
    ),
    _sub(
        "update",
        "/incident update <text>",
        "post a status update here and in the digest",
        p.free_text,
        h.update,
        channel=True,
    ),
    _sub(
        "milestone",
        "/incident milestone <impact-started|detected|acknowledged|mitigated> <when>",
        "set a milestone, e.g. `impact-started 20m ago` (when: now, 20m ago, ISO 8601)",
        p.milestone,
        h.milestone,
        channel=True,
    ),
    _sub(
        "resolve",
        "/incident resolve <summary>",
        "resolve the incident",
        p.free_text,
        h.resolve,
        channel=True,
    ),
    _sub("close", "/incident close", "close a resolved incident", p.no_args, h.close, channel=True),
    _sub(
        "reopen",
        "/incident reopen",
        "reopen a resolved incident",
        p.no_args,
        h.reopen,
        channel=True,
    ),
    _sub(
        "timeline",
        "/incident timeline",
        "recent timeline events (only to you)",
        p.no_args,
        h.timeline,
        channel=True,
    ),
    _sub(
        "summary",
        "/incident summary",
        "state, roles and durations so far",
        p.no_args,
        h.summary,
        channel=True,
    ),
    _sub(
        "page",
        "/incident page <service> [message] | /incident page link <PagerDuty URL or number>",
        "page a service's on-call, or link a PagerDuty incident opened elsewhere",
        p.page,
        h.page,
        channel=True,
    ),
    _sub("oncall", "/incident oncall [service]", "who is on call now and next", p.page, h.oncall),
    _sub(
        "alerts",
        "/incident alerts [unmatched | snooze <group> <duration>]",
        "recent alerts (here: this incident's and its groups); snooze a group's updates",
        p.alerts,
        h.alerts,
    ),
    _sub(
        "run",
        "/incident run [plan] <runbook> [name=value …]",
        "run a runbook in an incident's channel (no params: a form); "
        "`run plan` shows what it would do, anywhere",
        p.run,
        h.run,
    ),
    _sub("runs", "/incident runs", "runbook runs (here: this incident's)", p.no_args, h.runs),
    _sub(
        "postmortem",
        POSTMORTEM_USAGE,
        "the postmortem draft: summary, language check; write a section in a form, "
        "move it to review, publish it",
        p.postmortem,
        h.postmortem,
        channel=True,
    ),
    _sub(
        "action",
        ACTION_USAGE,
        "action items (`/incident action` for the details; here: this incident's)",
        p.action,
        h.action,
    ),
    _sub(
        "handoff",
        "/incident handoff [rotation] | /incident handoff note [rotation] <text>",
        "post the on-call handoff in the rotation's channel now, or leave a watch note for it",
        p.handoff,
        h.handoff,
    ),
    _sub("help", "/incident help", "what you can do here", p.no_args, _help, aliases=("?",)),
)

SUBCOMMANDS: dict[str, Subcommand] = {s.name: s for s in TABLE}
ALIASES: dict[str, str] = {alias: s.name for s in TABLE for alias in s.aliases}


def help_text(*, in_incident_channel: bool) -> str:
    """What you can do here: channel commands first inside an incident channel."""
    lines = []
    if in_incident_channel:
        lines.append("*In this incident's channel:*")
        lines += [f"• `{mrkdwn(s.usage)}`: {s.help}" for s in TABLE if s.channel_only]
        lines.append("*Anywhere:*")
    lines += [f"• `{mrkdwn(s.usage)}`: {s.help}" for s in TABLE if not s.channel_only]
    if not in_incident_channel:
        lines.append("_Run `/incident help` in an incident's channel for the commands there._")
    return "\n".join(lines)
