"""The handlers of the ``/incident`` subcommands: call the core, render its answer for Slack.

Each handler takes the :class:`Call` (who asked, where, the bot's pieces) and the parsed
arguments, and returns a :class:`~incidentbot.slack.reply.Reply`. Changes go through the use
cases in :mod:`incidentbot.usecases.incidents`, which queue their durable effects; a handler
only renders (mentions, ``mrkdwn`` escaping). The table in
:mod:`incidentbot.slack.command_table` says which handler serves which subcommand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from incidentbot import db
from incidentbot.alerts import queries as alert_queries
from incidentbot.alerts import snooze
from incidentbot.chat_text import mrkdwn
from incidentbot.clock import utcnow
from incidentbot.errors import DomainError
from incidentbot.incidents import listing
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ports import ExternalError
from incidentbot.slack import blocks, resolve_impact
from incidentbot.slack.reply import Reply
from incidentbot.usecases import alerts as alerts_uc
from incidentbot.usecases import incidents as uc
from incidentbot.usecases import paging as paging_uc
from incidentbot.usecases.core import Actor, Core

if TYPE_CHECKING:
    from incidentbot.slack.commands import CommandHandler


@dataclass(frozen=True)
class Call:
    """One ``/incident`` request: the bot's handler (its core and the other modules), who asked,
    the channel it was typed in and Slack's trigger id."""

    handler: CommandHandler
    user: str
    channel_id: str
    trigger_id: str

    @cached_property
    def incident(self) -> Incident | None:
        """The incident whose channel the command was typed in (None elsewhere): read the
        first time it is asked for, then kept for the rest of the request."""
        return self.handler.incident_in(self.channel_id)

    @property
    def core(self) -> Core:
        return self.handler.core

    @property
    def actor(self) -> Actor:
        return Actor(self.user, "slack")

    @property
    def ref(self) -> str:
        assert self.incident is not None  # the grammar refuses channel-only commands elsewhere
        return self.incident.ref

    @property
    def key(self) -> str:
        return f"slack:command:{self.trigger_id}"


def who(call: Call) -> str:
    return f"<@{call.user}>"


def declare(call: Call, args: dict[str, Any]) -> Reply:
    if not args["title"]:
        return Reply(
            "Opening the declare form…",
            open_modal=True,
            modal_args={"severity": args["severity"], "private": args.get("private", False)},
        )
    out = uc.declare(
        call.core,
        call.actor,
        title=args["title"],
        severity=args["severity"],
        service=args.get("service"),
        key=call.key,
        private=args.get("private", False),
    )
    return declared(call.user, out)


def declared(user: str, out: uc.Declared) -> Reply:
    if out.private:
        # Only the declarer sees it: the channel it was typed in may be public.
        return Reply(
            f":lock: You declared *{out.ref}* ({out.severity}), a private incident: "
            f"{mrkdwn(out.title)}\nCreating its private channel; everyone needed will be invited."
            + (f" Paging *{out.paged}* on-call." if out.paged else "")
        )
    return Reply(
        f":rotating_light: <@{user}> declared *{out.ref}* ({out.severity}): {mrkdwn(out.title)}\n"
        "Creating its channel; everyone needed will be invited."
        + (f" Paging *{out.paged}* on-call." if out.paged else ""),
        in_channel=True,
    )


LIST_LIMIT = 40  # incidents in one `list` reply
TIMELINE_LIMIT = 20  # events in one `timeline` reply (the latest)


def list_open(call: Call, args: dict[str, Any]) -> Reply:
    with db.read(call.core.engine) as s:
        incidents = listing.list_rows(s, call.core.settings, limit=LIST_LIMIT + 1)
    if not incidents:
        return Reply("No open incidents. :tada:")
    lines = _list_lines(incidents[:LIST_LIMIT])
    if len(incidents) > LIST_LIMIT:
        older = incidents[LIST_LIMIT - 1][0]
        lines += f"\n… and more: older ones with `incidentbot incident list --before {older}`"
    return Reply("*Open incidents*\n" + lines)


def _list_lines(page: list[tuple[Any, ...]]) -> str:
    """One line per incident of ``page`` (rows of listing.list_rows), newest first. A private
    incident shows who may not know of it only that it exists. Titles are escaped
    (chat_text.mrkdwn); as most hold none of its characters, the page's titles are searched
    for them once, and each escaped only if one does."""
    joined = "".join([row[3] for row in page])
    if "&" in joined or "<" in joined or ">" in joined:
        page = [(*row[:3], mrkdwn(row[3]), *row[4:]) for row in page]
    # The rows as the driver reads them, their fields unpacked, the ref written out, and the
    # bullet (the one character outside Latin-1) only in the separator: each line is built
    # of one-byte characters, and widened once, when the lines are joined.
    return "• " + "\n• ".join(
        [
            f"*INC-{number}* {severity} · {status} · :lock: _private_"
            if private
            else f"*INC-{number}* {severity} · {status} · {title} · <#{channel}>"
            if channel
            else f"*INC-{number}* {severity} · {status} · {title}"
            for number, severity, status, title, channel, private in page
        ]
    )


def sev(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.set_severity(call.core, call.actor, call.ref, args["severity"])
    return Reply(f"{who(call)} changed severity {out.old} → *{out.new}*", in_channel=True)


def status(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.set_status(call.core, call.actor, call.ref, args["status"])
    return Reply(f"{who(call)} changed status {out.old} → *{out.new}*", in_channel=True)


def field(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.set_field(call.core, call.actor, call.ref, args["field"], args["value"])
    old = f"`{mrkdwn(out.old)}`" if out.old is not None else "unset"
    if out.new is None:
        return Reply(f"{who(call)} cleared *{mrkdwn(out.label)}* (was {old})", in_channel=True)
    new = f"`{mrkdwn(out.new)}`"
    return Reply(f"{who(call)} set *{mrkdwn(out.label)}* to {new} (was {old})", in_channel=True)


def assign(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.assign(call.core, call.actor, call.ref, args["role"], args["user"])
    return Reply(
        f"{who(call)} assigned <@{out.user}> as *{out.role_label}*: {out.role_description}",
        in_channel=True,
    )


def unassign(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.unassign(call.core, call.actor, call.ref, args["role"])
    return Reply(f"{who(call)} unassigned the {out.role.replace('_', ' ')}", in_channel=True)


def note(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.note(call.core, call.actor, call.ref, args["text"])
    return Reply(f"Noted on the {out.ref} timeline.")


def update(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.update(call.core, call.actor, call.ref, args["text"])
    return Reply(f"Posting your update here and in #{out.digest_channel}.")


def milestone(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.set_milestone(call.core, call.actor, call.ref, args["milestone"], args["at"])
    label = out.milestone.replace("_", " ")
    return Reply(f"{who(call)} set *{label}* to {out.at:%Y-%m-%d %H:%M} UTC", in_channel=True)


def resolve(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.resolve(call.core, call.actor, call.ref, args["text"])
    done = Reply(
        f":white_check_mark: {who(call)} resolved *{out.ref}*: {mrkdwn(out.summary)}",
        in_channel=True,
    )
    if not call.trigger_id:
        return done
    channel = call.incident.channel_id if call.incident else ""
    return resolve_impact.ask(call.core, out.ref, channel or "", done)  # impact start missing


def close(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.close(call.core, call.actor, call.ref)
    return Reply(f":lock: {who(call)} closed *{out.ref}*", in_channel=True)


def reopen(call: Call, args: dict[str, Any]) -> Reply:
    out = uc.reopen(call.core, call.actor, call.ref)
    return Reply(f":warning: {who(call)} reopened *{out.ref}*", in_channel=True)


def resolve_click(core: Core) -> Callable[..., str | None]:
    """The Resolve button on "PagerDuty resolved #N: resolve INC-n too?": the resolve use case,
    as the clicker; what happened is shown to the clicker only."""

    def click(*, user: str, value: str, **_: Any) -> str | None:
        try:
            out = uc.resolve(core, Actor(user, "slack"), value, "Resolved in PagerDuty")
        except DomainError as exc:
            return f"Nothing changed: {mrkdwn(exc)}"
        return f":white_check_mark: You resolved *{out.ref}*."

    return click


def page(call: Call, args: dict[str, Any]) -> Reply:
    if "link" in args:
        linked = paging_uc.link(call.core, call.actor, call.ref, args["link"])
        what = f"PagerDuty #{linked.number} ({linked.service}, {linked.status})"
        if not linked.new:
            return Reply(f"{what} is already linked to {linked.ref}.")
        return Reply(f"{who(call)} linked {what} to *{linked.ref}*.", in_channel=True)
    out = uc.page(call.core, call.actor, call.ref, args["service"], args["message"])
    if not out.new:
        return Reply(f"*{out.service}* is already paged for {out.ref} ({out.status}).")
    return Reply(f"{who(call)} is paging *{out.service}* on-call.", in_channel=True)


def roles(call: Call, args: dict[str, Any]) -> Reply:
    assert call.incident is not None
    with db.read(call.core.engine) as s:
        held = {a.role: a.user for a in svc.active_roles(s, call.incident)}
    lines = [f"• *{r.label}*: {blocks.mention(held.get(r.name))}" for r in call.core.settings.roles]
    return Reply(f"*{call.ref} roles*\n" + "\n".join(lines))


def summary(call: Call, args: dict[str, Any]) -> Reply:
    inc = call.incident  # read once, when the grammar asked whether this is its channel
    assert inc is not None  # the grammar refuses channel-only commands elsewhere
    with db.read(call.core.engine) as s:
        roles = svc.active_roles(s, inc)
    text, blks = blocks.summary(inc, roles, utcnow())
    return Reply(text, blks)


def timeline(call: Call, args: dict[str, Any]) -> Reply:
    inc = call.incident
    assert inc is not None
    with db.read(call.core.engine) as s:
        events, more = svc.latest(s, inc, TIMELINE_LIMIT)
    text, blks = blocks.timeline(inc, events, more=more)
    return Reply(text, blks)


def alerts(call: Call, args: dict[str, Any]) -> Reply:
    if "snooze" in args:
        return _snooze(call, args["snooze"], args["length"])
    unmatched, incident = args.get("unmatched", False), call.incident
    groups: list[str] = []
    with db.read(call.core.engine) as s:
        here = incident.ref if incident is not None and not unmatched else None
        views = alert_queries.list_alerts(s, unmatched=unmatched, incident=here, limit=20)
        if here is not None and incident is not None:
            now = utcnow()
            for g in snooze.groups_of(s, incident):
                until = snooze.snoozed_until(s, g.id, now)
                asleep = f" · snoozed until {until:%Y-%m-%d %H:%M} UTC" if until else ""
                groups.append(f"• {mrkdwn(snooze.group_label(g))}{asleep}")
    what = "Unmatched alerts" if unmatched else (f"{here} alerts" if here else "Recent alerts")
    if not views:
        return Reply(f"{what}: none.")
    text = f"*{what}*\n" + "\n".join(f"• {mrkdwn(v.line())}" for v in views)
    if groups:
        text += "\n*Groups* (`/incident alerts snooze <group> <duration>`)\n" + "\n".join(groups)
    return Reply(text)


def _snooze(call: Call, group: int, length: timedelta) -> Reply:
    if call.incident is None:
        return Reply("Snooze an alert group in its incident's channel.")
    done = alerts_uc.snooze_group(call.core, call.actor, call.incident.ref, group, length)
    if done.until is None:
        return Reply(f"{mrkdwn(done.group)} is awake again on {done.ref}.")
    return Reply(
        f":zzz: {mrkdwn(done.group)} snoozed until {done.until:%Y-%m-%d %H:%M} UTC: its message "
        "stops updating and it opens no new incident until then."
    )


def oncall(call: Call, args: dict[str, Any]) -> Reply:
    service: str | None = args["service"]
    pd, pager = call.core.settings.pagerduty, call.core.pager
    if pager is None or not pd.enabled:
        return Reply("Paging is not configured, so on-call is unknown here.")
    names = [service] if service else sorted(pd.services)
    unknown = [n for n in names if n not in pd.services]
    if unknown:
        known = ", ".join(sorted(pd.services))
        return Reply(f"Unknown service '{mrkdwn(unknown[0])}': configured are {known}.")
    now = utcnow()
    lines = []
    for name in names:
        policy_id = pd.services[name].escalation_policy_id
        if not policy_id:
            lines.append(f"*{name}*: no escalation policy configured")
            continue
        try:
            rows = pager.oncalls([policy_id], since=now, until=now + timedelta(days=14))
        except ExternalError as exc:
            lines.append(f"*{name}*: PagerDuty did not answer ({exc.code})")
            continue
        first = [o for o in rows if o.level == 1]
        current = [o for o in first if o.start is None or o.start <= now]
        upcoming = [o for o in first if o.start is not None and o.start > now]
        now_text = ", ".join(mrkdwn(o.name) for o in current) or "nobody"
        nxt = upcoming[0] if upcoming else None
        next_text = f"{mrkdwn(nxt.name)} from {nxt.start:%a %d %b %H:%M} UTC" if nxt else "unknown"
        lines.append(f"*{name}*: now {now_text}; next {next_text}")
    return Reply("*On call*\n" + "\n".join(lines))


# The subcommands whose sub-grammar lives in another module keep that module's handler.


def run(call: Call, args: dict[str, Any]) -> Reply:
    runbooks = call.handler.runbooks
    if runbooks is None:
        return Reply("Runbooks are not available in this bot.")
    out = runbooks.run(
        user=call.user,
        incident=call.incident,
        runbook_name=args["runbook"],
        params=args["params"],
        plan_only=args["plan"],
        key=call.key,
    )
    return _run_reply(out)


def runs(call: Call, args: dict[str, Any]) -> Reply:
    runbooks = call.handler.runbooks
    if runbooks is None:
        return Reply("Runbooks are not available in this bot.")
    return _run_reply(runbooks.runs(call.incident))


def _run_reply(out: Any) -> Reply:
    return Reply(
        out.text,
        out.blocks,
        in_channel=out.in_channel,
        open_modal=out.open_modal,
        modal_args=out.modal_args or {},
    )


def action(call: Call, args: dict[str, Any]) -> Reply:
    actions = call.handler.actions
    if actions is None:
        return Reply("Action items are not available in this bot.")
    return actions.handle(args, user=call.user, incident=call.incident)


def postmortem(call: Call, args: dict[str, Any]) -> Reply:
    postmortems = call.handler.postmortems
    if postmortems is None:
        return Reply("Postmortems are not available in this bot.")
    assert call.incident is not None
    return postmortems.handle(args, user=call.user, incident=call.incident)


def handoff(call: Call, args: dict[str, Any]) -> Reply:
    if call.handler.handoff is None:
        return Reply("The on-call handoff is not available in this bot.")
    return call.handler.handoff.handle(args, user=call.user, trigger_id=call.trigger_id)
