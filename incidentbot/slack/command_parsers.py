"""The argument parsers of the ``/incident`` subcommands, one per argument shape.

Each takes the subcommand's name, the text after it, the settings and the subcommand's usage,
and returns a :class:`Command` or a :class:`Usage`; it may raise
:class:`~incidentbot.errors.DomainError` for a value the policy refuses (``parse`` turns it into
a :class:`Usage`). :mod:`incidentbot.slack.command_table` says which subcommand uses which.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from incidentbot import policy
from incidentbot.chat_text import mrkdwn
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.durations import parse_duration, parse_when
from incidentbot.incidents.models import SETTABLE_MILESTONES
from incidentbot.slack.action_grammar import ActionUsage, parse_action
from incidentbot.slack.handoff_commands import parse as parse_handoff
from incidentbot.slack.postmortem_commands import parse as parse_postmortem

_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_ANY_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
# A first word that reads as a severity (sev2, SEV-1, sev99, sevX) is one, or an error naming
# the valid ones: never quietly part of the title. "Sevastopol" is a title word.
_SEV = re.compile(r"^sev[-_]?([0-9]+|[a-z])$", re.IGNORECASE)
_SERVICE = re.compile(r"^(?:service|svc)[:=]([a-z0-9][a-z0-9_-]*)$", re.IGNORECASE)
_PRIVATE = ("--private", "\u2014private")


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


def mention_user(token: str) -> str | None:
    match = _MENTION.match(token)
    return match.group(1) if match else None


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def no_args(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    if rest and name != "help":
        return Usage(f"`{name}` takes no arguments.", usage)
    return Command(name)


def declare(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    severity: str | None = None
    words = rest.split(" ") if rest else []
    service = next((m.group(1).lower() for w in words if (m := _SERVICE.match(w))), None)
    words = [w for w in words if not _SERVICE.match(w)]
    # `--private` (anywhere before the title: Slack turns `--` into an em dash on some clients)
    private = False
    while words and words[0].lower() in _PRIVATE:
        private, words = True, words[1:]
    if words and _SEV.match(words[0]):
        severity = policy.severity(settings, words[0]).name
        words = words[1:]
    elif len(words) >= 2 and words[0].lower() == "sev" and words[1].isdigit():
        severity = policy.severity(settings, words[1]).name
        words = words[2:]
    while words and words[0].lower() in _PRIVATE:
        private, words = True, words[1:]
    title = _strip_quotes(" ".join(words).strip())
    args = {"severity": severity, "title": title or None, "service": service, "private": private}
    if title and len(title) > 200:
        return Usage(f"The title is {len(title)} characters long: at most 200.", usage)
    return Command("declare", args)


def one_word(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    if not rest:
        return Usage(f"`{name}` needs a value.", usage + _choices(name, settings))
    value = _strip_quotes(rest)
    if name == "sev":
        return Command("sev", {"severity": policy.severity(settings, value).name})
    return Command("status", {"status": policy.status(settings, value).name})


def _choices(name: str, settings: Settings) -> str:
    if name == "sev":
        return " (" + ", ".join(settings.severity_names()) + ")"
    return " (" + ", ".join(s.name for s in settings.statuses) + ")"


def assign(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    roles = ", ".join(r.name for r in settings.roles)
    mentions = _ANY_MENTION.findall(rest)
    role_text = _strip_quotes(_ANY_MENTION.sub(" ", rest).strip())
    if not role_text:
        return Usage(f"`{name}` needs a role ({roles}).", usage)
    if not mentions:
        return Usage("Mention the person to assign, like @alice.", usage)
    if len(mentions) > 1:
        return Usage("Mention exactly one person: each role has one holder.", usage)
    role = policy.role(settings, role_text)
    return Command("assign", {"role": role.name, "user": mentions[0]})


def unassign(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    role_text = _strip_quotes(_ANY_MENTION.sub(" ", rest).strip())
    if not role_text:
        roles = ", ".join(r.name for r in settings.roles)
        return Usage(f"`{name}` needs a role ({roles}).", usage)
    return Command("unassign", {"role": policy.role(settings, role_text).name})


def free_text(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    text = _strip_quotes(rest)
    if not text:
        what = "a summary of what fixed it" if name == "resolve" else "some text"
        return Usage(f"`{name}` needs {what}.", usage)
    if len(text) > 3000:
        return Usage(f"That is {len(text)} characters: at most 3000.", usage)
    return Command(name, {"text": text})


def page(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    services = ", ".join(sorted(settings.pagerduty.services)) or "none configured"
    service, _, message = rest.partition(" ")
    if name == "oncall":
        if message:
            return Usage("`oncall` takes at most a service name.", usage)
        return Command("oncall", {"service": service.lower() or None})
    if not service:
        return Usage(f"`page` needs a service ({services}).", usage)
    if service.lower() == "link":
        if not message.strip():
            return Usage("`page link` needs a PagerDuty incident's URL or number.", usage)
        return Command("page", {"link": message.strip()})
    if service.lower() not in settings.pagerduty.services:
        return Usage(f"Unknown service '{service}': configured are {services}.", usage)
    return Command("page", {"service": service.lower(), "message": _strip_quotes(message) or None})


def alerts(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    words = rest.split()
    if words and words[0].lower() == "snooze":
        if len(words) != 3 or not words[1].isdigit():
            return Usage("`alerts snooze` takes a group number and a duration (0 ends it).", usage)
        try:
            length = parse_duration(words[2])
        except ValueError as exc:
            return Usage(f"`alerts snooze`: {exc}", usage)
        return Command("alerts", {"snooze": int(words[1]), "length": length})
    if rest.lower() not in ("", "unmatched"):
        return Usage(f"`alerts` takes only `unmatched` or `snooze`, not '{rest}'.", usage)
    return Command("alerts", {"unmatched": rest.lower() == "unmatched"})


_RUNBOOK = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PARAM = re.compile(r"^([a-zA-Z][a-zA-Z0-9_]{0,62})=(.*)$", re.DOTALL)


def run(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    try:
        words = shlex.split(rest)
    except ValueError:
        return Usage("A quote is not closed.", usage)
    plan = bool(words) and words[0].lower() in ("plan", "dry-run", "--dry-run")
    if plan:
        words = words[1:]
    if not words:
        return Usage(
            "`run` needs a runbook name (see `/incident runs` and the runbook list).", usage
        )
    runbook = words[0].lower()
    if not _RUNBOOK.match(runbook):
        return Usage(f"'{words[0][:40]}' is not a runbook name.", usage)
    params: dict[str, str] = {}
    for word in words[1:]:
        match = _PARAM.match(word)
        if match is None:
            return Usage(f"Params are name=value pairs; '{word[:40]}' is not one.", usage)
        key, value = match.group(1).lower(), match.group(2)
        if key in params:
            return Usage(f"The param `{key}` is given twice.", usage)
        params[key] = value
    return Command("run", {"plan": plan, "runbook": runbook, "params": params})


def action(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    try:
        return Command("action", parse_action(rest, timezone=settings.timezone))
    except ActionUsage as exc:
        return Usage(str(exc), exc.usage)


def postmortem(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    args = parse_postmortem(rest, settings)
    return Command(name) if args["op"] == "summary" else Command(name, args)


def handoff(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    return Command("handoff", parse_handoff(rest, settings))


def milestone(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    """``milestone <name> <when>``: ``impact-started 20m ago``, ``mitigated now``, ISO 8601."""
    allowed = ", ".join(m.replace("_", "-") for m in SETTABLE_MILESTONES)
    which, _, when = rest.partition(" ")
    if not which:
        return Usage(f"`milestone` needs a milestone ({allowed}) and a time.", usage)
    key = which.lower().replace("-", "_")
    if key not in SETTABLE_MILESTONES:
        return Usage(f"Unknown milestone '{which[:40]}': use one of {allowed}.", usage)
    if not when.strip():
        return Usage(f"`milestone {which}` needs a time: now, 20m ago or ISO 8601.", usage)
    try:
        at = parse_when(_strip_quotes(when.strip()), utcnow())
    except ValueError as exc:
        return Usage(str(exc)[:1].upper() + str(exc)[1:] + ".", usage)
    return Command("milestone", {"milestone": key, "at": at})


def field(name: str, rest: str, settings: Settings, usage: str) -> Command | Usage:
    """``field <name> <value>`` or ``field <name> --clear``; the value is checked by the
    configured policy in the use case, as at declare."""
    names = ", ".join(f.name for f in settings.fields) or "none configured"
    which, _, value = rest.strip().partition(" ")
    if not which:
        return Usage(f"`field` needs a field ({names}) and a value, or --clear.", usage)
    spec = policy.field_spec(settings, which.lower())
    value = _strip_quotes(value.strip())
    if not value:
        return Usage(f"`field {spec.name}` needs a value, or --clear to clear it.", usage)
    if len(value) > 500:
        return Usage(f"That value is {len(value)} characters: at most 500.", usage)
    return Command("field", {"field": spec.name, "value": None if value == "--clear" else value})
