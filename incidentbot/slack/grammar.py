"""The ``/incident`` grammar: one slash command, many subcommands.

``parse`` turns the text Slack sends into a :class:`Command` or a :class:`Usage` (what was wrong
and the right usage). It never raises: arbitrary text gives one of the two. Slack escapes
mentions as ``<@U123|name>``, channels as ``<#C123|name>`` and links as ``<https://..|label>``;
smart quotes, emoji and runs of spaces are normal in what people type.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from incidentbot import policy
from incidentbot.chat_text import mrkdwn
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.slack.action_grammar import USAGE as ACTION_USAGE
from incidentbot.slack.action_grammar import ActionUsage, parse_action
from incidentbot.slack.handoff_commands import parse as parse_handoff
from incidentbot.slack.postmortem_commands import USAGE as POSTMORTEM_USAGE
from incidentbot.slack.postmortem_commands import parse as parse_postmortem

_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_ANY_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
# A first word that reads as a severity (sev2, SEV-1, sev99, sevX) is one, or an error naming
# the valid ones: never quietly part of the title. "Sevastopol" is a title word.
_SEV = re.compile(r"^sev[-_]?([0-9]+|[a-z])$", re.IGNORECASE)
_SERVICE = re.compile(r"^(?:service|svc)[:=]([a-z0-9][a-z0-9_-]*)$", re.IGNORECASE)
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})


@dataclass(frozen=True)
class Command:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """A refusal: ``error`` says what was wrong (None for plain help), ``usage`` how to say it."""

    error: str | None
    usage: str

    def text(self) -> str:
        """As Slack shows it: ``<title>`` must be escaped or Slack reads it as a link, and the
        error may quote what was typed."""
        usage = mrkdwn(self.usage)
        return f"{mrkdwn(self.error)}\nUsage: {usage}" if self.error else usage


@dataclass(frozen=True)
class Spec:
    usage: str
    help: str
    channel_only: bool = False


SPECS: dict[str, Spec] = {
    "declare": Spec(
        "/incident declare [sev1..sev4] <title>", "declare an incident (no title opens a form)"
    ),
    "list": Spec("/incident list", "list open incidents"),
    "sev": Spec("/incident sev <1-4>", "change the severity", True),
    "status": Spec("/incident status <status>", "change the status", True),
    "assign": Spec("/incident assign <role> @user", "give someone a role", True),
    "unassign": Spec("/incident unassign <role>", "take a role back", True),
    "roles": Spec("/incident roles", "who holds which role", True),
    "note": Spec("/incident note <text>", "add a note to the timeline", True),
    "update": Spec("/incident update <text>", "post a status update here and in the digest", True),
    "resolve": Spec("/incident resolve <summary>", "resolve the incident", True),
    "reopen": Spec("/incident reopen", "reopen a resolved incident", True),
    "timeline": Spec("/incident timeline", "recent timeline events (only to you)", True),
    "summary": Spec("/incident summary", "state, roles and durations so far", True),
    "page": Spec("/incident page <service> [message]", "page a service's on-call", True),
    "oncall": Spec("/incident oncall [service]", "who is on call now and next"),
    "alerts": Spec("/incident alerts [unmatched]", "recent alerts (here: this incident's)"),
    "run": Spec(
        "/incident run [plan] <runbook> [name=value …]",
        "run a runbook in an incident's channel (no params: a form); "
        "`run plan` shows what it would do, anywhere",
    ),
    "runs": Spec("/incident runs", "runbook runs (here: this incident's)"),
    "postmortem": Spec(
        POSTMORTEM_USAGE,
        "the postmortem draft: summary, language check; write a section in a form, "
        "move it to review, publish it",
        True,
    ),
    "action": Spec(
        ACTION_USAGE,
        "action items (`/incident action` for the details; here: this incident's)",
    ),
    "handoff": Spec(
        "/incident handoff [rotation] | /incident handoff note [rotation] <text>",
        "post the on-call handoff in the rotation's channel now, or leave a watch note for it",
    ),
    "help": Spec("/incident help", "what you can do here"),
}

ALIASES = {"severity": "sev", "ls": "list", "open": "declare", "new": "declare", "?": "help"}


def normalize(text: str) -> str:
    """Fold smart quotes, non-breaking and repeated spaces; keep everything else as typed."""
    text = (text or "").translate(_QUOTES).replace("\u00a0", " ")
    return " ".join(text.split())


def mention_user(token: str) -> str | None:
    match = _MENTION.match(token)
    return match.group(1) if match else None


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def parse(text: str, *, settings: Settings, in_incident_channel: bool) -> Command | Usage:
    """Parse the text after ``/incident``."""
    clean = normalize(text)
    if not clean:
        return Command("help")
    head, _, rest = clean.partition(" ")
    name = head.lower()
    name = ALIASES.get(name, name)
    rest = rest.strip()
    spec = SPECS.get(name)
    if spec is None:
        shown = head if len(head) <= 40 else head[:40] + "…"
        return Usage(
            f"Unknown subcommand `{shown}`.",
            "/incident <subcommand>; try `/incident help` for the list",
        )
    if spec.channel_only and not in_incident_channel:
        return Usage(
            f"`/incident {name}` only works in an incident's channel.",
            spec.usage + " (run it in the incident's channel)",
        )
    try:
        return _PARSERS.get(name, _no_args)(name, rest, settings, spec)
    except DomainError as exc:
        return Usage(str(exc)[:1].upper() + str(exc)[1:] + ".", spec.usage)


def _no_args(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    if rest and name != "help":
        return Usage(f"`{name}` takes no arguments.", spec.usage)
    return Command(name)


def _declare(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    severity: str | None = None
    words = rest.split(" ") if rest else []
    service = next((m.group(1).lower() for w in words if (m := _SERVICE.match(w))), None)
    words = [w for w in words if not _SERVICE.match(w)]
    if words and _SEV.match(words[0]):
        severity = policy.severity(settings, words[0]).name
        words = words[1:]
    elif len(words) >= 2 and words[0].lower() == "sev" and words[1].isdigit():
        severity = policy.severity(settings, words[1]).name
        words = words[2:]
    title = _strip_quotes(" ".join(words).strip())
    if not title:
        return Command("declare", {"severity": severity, "title": None, "service": service})
    if len(title) > 200:
        return Usage(f"The title is {len(title)} characters long: at most 200.", spec.usage)
    return Command("declare", {"severity": severity, "title": title, "service": service})


def _one_word(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    if not rest:
        return Usage(f"`{name}` needs a value.", spec.usage + _choices(name, settings))
    value = _strip_quotes(rest)
    if name == "sev":
        return Command("sev", {"severity": policy.severity(settings, value).name})
    return Command("status", {"status": policy.status(settings, value).name})


def _choices(name: str, settings: Settings) -> str:
    if name == "sev":
        return " (" + ", ".join(settings.severity_names()) + ")"
    return " (" + ", ".join(s.name for s in settings.statuses) + ")"


def _assign(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    roles = ", ".join(r.name for r in settings.roles)
    mentions = _ANY_MENTION.findall(rest)
    role_text = _strip_quotes(_ANY_MENTION.sub(" ", rest).strip())
    if not role_text:
        return Usage(f"`{name}` needs a role ({roles}).", spec.usage)
    if not mentions:
        return Usage("Mention the person to assign, like @alice.", spec.usage)
    if len(mentions) > 1:
        return Usage("Mention exactly one person: each role has one holder.", spec.usage)
    role = policy.role(settings, role_text)
    return Command("assign", {"role": role.name, "user": mentions[0]})


def _unassign(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    role_text = _strip_quotes(_ANY_MENTION.sub(" ", rest).strip())
    if not role_text:
        roles = ", ".join(r.name for r in settings.roles)
        return Usage(f"`{name}` needs a role ({roles}).", spec.usage)
    return Command("unassign", {"role": policy.role(settings, role_text).name})


def _text(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    text = _strip_quotes(rest)
    if not text:
        what = "a summary of what fixed it" if name == "resolve" else "some text"
        return Usage(f"`{name}` needs {what}.", spec.usage)
    if len(text) > 3000:
        return Usage(f"That is {len(text)} characters: at most 3000.", spec.usage)
    return Command(name, {"text": text})


def _page(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    services = ", ".join(sorted(settings.pagerduty.services)) or "none configured"
    service, _, message = rest.partition(" ")
    if name == "oncall":
        if message:
            return Usage("`oncall` takes at most a service name.", spec.usage)
        return Command("oncall", {"service": service.lower() or None})
    if not service:
        return Usage(f"`page` needs a service ({services}).", spec.usage)
    if service.lower() not in settings.pagerduty.services:
        return Usage(f"Unknown service '{service}': configured are {services}.", spec.usage)
    return Command("page", {"service": service.lower(), "message": _strip_quotes(message) or None})


def _alerts(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    if rest.lower() not in ("", "unmatched"):
        return Usage(f"`alerts` takes only `unmatched`, not '{rest}'.", spec.usage)
    return Command("alerts", {"unmatched": rest.lower() == "unmatched"})


_RUNBOOK = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PARAM = re.compile(r"^([a-zA-Z][a-zA-Z0-9_]{0,62})=(.*)$", re.DOTALL)


def _run(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    try:
        words = shlex.split(rest)
    except ValueError:
        return Usage("A quote is not closed.", spec.usage)
    plan = bool(words) and words[0].lower() in ("plan", "dry-run", "--dry-run")
    if plan:
        words = words[1:]
    if not words:
        return Usage(
            "`run` needs a runbook name (see `/incident runs` and the runbook list).", spec.usage
        )
    runbook = words[0].lower()
    if not _RUNBOOK.match(runbook):
        return Usage(f"'{words[0][:40]}' is not a runbook name.", spec.usage)
    params: dict[str, str] = {}
    for word in words[1:]:
        match = _PARAM.match(word)
        if match is None:
            return Usage(f"Params are name=value pairs; '{word[:40]}' is not one.", spec.usage)
        key, value = match.group(1).lower(), match.group(2)
        if key in params:
            return Usage(f"The param `{key}` is given twice.", spec.usage)
        params[key] = value
    return Command("run", {"plan": plan, "runbook": runbook, "params": params})


def _action(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    try:
        return Command("action", parse_action(rest, timezone=settings.timezone))
    except ActionUsage as exc:
        return Usage(str(exc), exc.usage)


def _postmortem(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    args = parse_postmortem(rest)
    return Command(name) if args["op"] == "summary" else Command(name, args)


def _handoff(name: str, rest: str, settings: Settings, spec: Spec) -> Command | Usage:
    return Command("handoff", parse_handoff(rest, settings))


_PARSERS = {
    "postmortem": _postmortem,
    "handoff": _handoff,
    "action": _action,
    "run": _run,
    "alerts": _alerts,
    "page": _page,
    "oncall": _page,
    "declare": _declare,
    "sev": _one_word,
    "status": _one_word,
    "assign": _assign,
    "unassign": _unassign,
    "note": _text,
    "update": _text,
    "resolve": _text,
}


def help_text(*, in_incident_channel: bool) -> str:
    """What you can do here: channel commands first inside an incident channel."""
    lines = []
    if in_incident_channel:
        lines.append("*In this incident's channel:*")
        lines += [f"• `{mrkdwn(s.usage)}`: {s.help}" for s in SPECS.values() if s.channel_only]
        lines.append("*Anywhere:*")
    lines += [f"• `{mrkdwn(s.usage)}`: {s.help}" for s in SPECS.values() if not s.channel_only]
    if not in_incident_channel:
        lines.append("_Run `/incident help` in an incident's channel for the commands there._")
    return "\n".join(lines)
