"""``/incident`` subcommands: parse, check, call the core, say what happened.

Kept apart from Bolt so that it is plain Python: a :class:`Reply` comes back and the Bolt
listener acknowledges Slack with it. A change and the durable effects it needs (header and
digest refresh, a status update's posts) commit in one transaction; the reply is only what the
user sees at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from incidentbot import db
from incidentbot.alerts import queries as alert_queries
from incidentbot.chat_text import mention_tokens, mrkdwn, mrkdwn_keeping
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import effects
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.paging import flows as paging
from incidentbot.ports import ExternalError, Pager
from incidentbot.slack import blocks
from incidentbot.slack.action_commands import ActionCommands
from incidentbot.slack.grammar import SPECS, Command, Usage, help_text, parse
from incidentbot.slack.handoff_commands import HandoffCommands
from incidentbot.slack.postmortem_commands import PostmortemCommands
from incidentbot.slack.reply import Reply
from incidentbot.slack.runbook_commands import RunbookCommands


class CommandHandler:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        pager: Pager | None = None,
        runbooks: RunbookCommands | None = None,
        actions: ActionCommands | None = None,
        postmortems: PostmortemCommands | None = None,
        handoff: HandoffCommands | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.pager = pager
        self.runbooks = runbooks
        self.actions = actions
        self.postmortems = postmortems
        self.handoff = handoff

    def handle(self, *, user_id: str, channel_id: str, text: str, trigger_id: str) -> Reply:
        with db.transaction(self.engine) as s:
            incident = svc.get_by_channel(s, channel_id)
        parsed = parse(text, settings=self.settings, in_incident_channel=incident is not None)
        if isinstance(parsed, Usage):
            return Reply(parsed.text())
        try:
            return self._dispatch(parsed, user_id, incident, trigger_id)
        except DomainError as exc:
            usage = SPECS[parsed.name].usage
            message = str(exc)
            # It may quote what was typed; the mentions the bot built from what it knows (the
            # incident's people, the runbook access rules) stay mentions.
            message = mrkdwn_keeping(message, self._known_markup(user_id, incident))
            return Reply(f"{message[:1].upper()}{message[1:]}.\nUsage: {mrkdwn(usage)}")

    def _known_markup(self, user: str, incident: Incident | None) -> set[str]:
        """Mentions the bot builds into its refusals: who asked, the commander, and the people
        and groups of the runbook access rules."""
        rules = self.settings.runbooks.access
        users = [u for r in rules for u in (*r.users, *r.approvers)]
        groups = {f"<!subteam^{g}>" for r in rules for g in (*r.groups, *r.approver_groups)}
        commander = incident.commander if incident is not None else None
        return mention_tokens([user, commander, *users]) | groups

    def _dispatch(
        self, cmd: Command, user: str, incident: Incident | None, trigger_id: str
    ) -> Reply:
        name, args = cmd.name, cmd.args
        if name == "help":
            return Reply(help_text(in_incident_channel=incident is not None))
        if name == "list":
            return self._list()
        if name == "declare":
            if not args["title"]:
                return Reply(
                    "Opening the declare form…",
                    open_modal=True,
                    modal_args={"severity": args["severity"]},
                )
            return self.declare(
                user,
                title=args["title"],
                severity=args["severity"],
                key=f"slack:command:{trigger_id}",
                service=args.get("service"),
            )
        if name == "oncall":
            return self._oncall(args["service"])
        if name == "alerts":
            return self._alerts(args["unmatched"], incident)
        if name == "action":
            if self.actions is None:
                return Reply("Action items are not available in this bot.")
            return self.actions.handle(args, user=user, incident=incident)
        if name == "postmortem" and incident is not None:
            if self.postmortems is None:
                return Reply("Postmortems are not available in this bot.")
            return self.postmortems.handle(args, user=user, incident=incident)
        if name in ("run", "runs"):
            return self._runbook(name, args, user, incident, trigger_id)
        if name == "handoff":
            if self.handoff is None:
                return Reply("The on-call handoff is not available in this bot.")
            return self.handoff.handle(args, user=user, trigger_id=trigger_id)
        assert incident is not None  # the grammar refuses channel-only commands elsewhere
        return self._in_channel(name, args, user, incident)

    def declare(
        self,
        user: str,
        *,
        title: str,
        severity: str | None,
        key: str,
        description: str | None = None,
        fields: dict[str, str] | None = None,
        commander: str | None = None,
        impact_started_at: Any = None,
        service: str | None = None,
    ) -> Reply:
        with db.transaction(self.engine) as s:
            inc = svc.declare(
                s,
                self.settings,
                title=title,
                severity=severity or self.settings.default_severity,
                actor=user,
                description=description,
                fields=fields,
                commander=commander,
                impact_started_at=impact_started_at,
                idempotency_key=key,
            )
            # Idempotent by key: a repeated declare finds the runs it already started.
            effects.start_declare_effects(s, inc, declarer=user)
            page = paging.page_on_declare(s, self.settings, inc, actor=user, service=service)
        return Reply(
            f":rotating_light: <@{user}> declared *{inc.ref}* ({inc.severity}): "
            f"{mrkdwn(inc.title)}\n"
            "Creating its channel; everyone needed will be invited."
            + (f" Paging *{page.service}* on-call." if page else ""),
            in_channel=True,
        )

    def _list(self) -> Reply:
        with db.transaction(self.engine) as s:
            incidents = svc.list_incidents(s, self.settings)
        if not incidents:
            return Reply("No open incidents. :tada:")
        lines = [
            f"• *{i.ref}* {i.severity} · {i.status} · {mrkdwn(i.title)}"
            + (f" · <#{i.channel_id}>" if i.channel_id else "")
            for i in incidents[:40]
        ]
        return Reply("*Open incidents*\n" + "\n".join(lines))

    def _in_channel(self, name: str, args: dict[str, Any], user: str, inc: Incident) -> Reply:
        st, ref = self.settings, inc.ref
        with db.transaction(self.engine) as s:
            if name == "roles":
                return self._roles(s, inc)
            if name == "summary":
                text, blks = blocks.summary(inc, svc.active_roles(s, inc), utcnow())
                return Reply(text, blks)
            if name == "timeline":
                text, blks = blocks.timeline(inc, svc.timeline(s, inc))
                return Reply(text, blks)
            if name == "note":
                svc.add_note(s, st, ref, args["text"], actor=user)
                return Reply(f"Noted on the {ref} timeline.")
            if name == "page":
                page, new = paging.request_page(
                    s, st, inc, args["service"], actor=user, message=args["message"]
                )
                if not new:
                    return Reply(f"*{page.service}* is already paged for {ref} ({page.status}).")
                return Reply(f"<@{user}> is paging *{page.service}* on-call.", in_channel=True)
            if name == "update":
                inc = svc.get(s, ref)
                effects.post_update(s, st, inc, actor=user, text=args["text"])
                return Reply(f"Posting your update here and in #{st.channels.digest}.")
            reply = self._change(s, name, args, user, inc)
            effects.refresh(s, svc.get(s, ref), actor=user, reason=name)
            return reply

    def _change(
        self, s: Session, name: str, args: dict[str, Any], user: str, inc: Incident
    ) -> Reply:
        st, ref = self.settings, inc.ref
        who = f"<@{user}>"
        if name == "sev":
            old = inc.severity
            inc = svc.set_severity(s, st, ref, args["severity"], actor=user)
            return Reply(f"{who} changed severity {old} → *{inc.severity}*", in_channel=True)
        if name == "status":
            old = inc.status
            inc = svc.set_status(s, st, ref, args["status"], actor=user)
            return Reply(f"{who} changed status {old} → *{inc.status}*", in_channel=True)
        if name == "assign":
            inc = svc.assign_role(s, st, ref, args["role"], args["user"], actor=user)
            role = next(r for r in st.roles if r.name == args["role"])
            return Reply(
                f"{who} assigned <@{args['user']}> as *{role.label}*: {role.description}",
                in_channel=True,
            )
        if name == "unassign":
            svc.unassign_role(s, st, ref, args["role"], actor=user)
            return Reply(f"{who} unassigned the {args['role'].replace('_', ' ')}", in_channel=True)
        if name == "resolve":
            inc = svc.resolve(s, st, ref, args["text"], actor=user)
            paging.resolve_pages(s, st, inc, actor=user)
            return Reply(
                f":white_check_mark: {who} resolved *{ref}*: {mrkdwn(args['text'])}",
                in_channel=True,
            )
        if name == "reopen":
            svc.reopen(s, st, ref, actor=user)
            return Reply(f":warning: {who} reopened *{ref}*", in_channel=True)
        raise DomainError(f"`{name}` is not handled here")

    def _alerts(self, unmatched: bool, incident: Incident | None) -> Reply:
        with db.transaction(self.engine) as s:
            here = incident.ref if incident is not None and not unmatched else None
            views = alert_queries.list_alerts(s, unmatched=unmatched, incident=here, limit=20)
        what = "Unmatched alerts" if unmatched else (f"{here} alerts" if here else "Recent alerts")
        if not views:
            return Reply(f"{what}: none.")
        return Reply(f"*{what}*\n" + "\n".join(f"• {mrkdwn(v.line())}" for v in views))

    def _oncall(self, service: str | None) -> Reply:
        pd = self.settings.pagerduty
        if self.pager is None or not pd.enabled:
            return Reply("Paging is not configured, so on-call is unknown here.")
        names = [service] if service else sorted(pd.services)
        unknown = [n for n in names if n not in pd.services]
        if unknown:
            known = ", ".join(sorted(pd.services))
            return Reply(f"Unknown service '{mrkdwn(unknown[0])}': configured are {known}.")
        now = utcnow()
        lines = []
        for name in names:
            policy = pd.services[name].escalation_policy_id
            if not policy:
                lines.append(f"*{name}*: no escalation policy configured")
                continue
            try:
                rows = self.pager.oncalls([policy], since=now, until=now + timedelta(days=14))
            except ExternalError as exc:
                lines.append(f"*{name}*: PagerDuty did not answer ({exc.code})")
                continue
            first = [o for o in rows if o.level == 1]
            current = [o for o in first if o.start is None or o.start <= now]
            upcoming = [o for o in first if o.start is not None and o.start > now]
            now_text = ", ".join(mrkdwn(o.name) for o in current) or "nobody"
            nxt = upcoming[0] if upcoming else None
            next_text = (
                f"{mrkdwn(nxt.name)} from {nxt.start:%a %d %b %H:%M} UTC" if nxt else "unknown"
            )
            lines.append(f"*{name}*: now {now_text}; next {next_text}")
        return Reply("*On call*\n" + "\n".join(lines))

    def _runbook(
        self, name: str, args: dict[str, Any], user: str, inc: Incident | None, trigger_id: str
    ) -> Reply:
        if self.runbooks is None:
            return Reply("Runbooks are not available in this bot.")
        if name == "runs":
            out = self.runbooks.runs(inc)
        else:
            out = self.runbooks.run(
                user=user,
                incident=inc,
                runbook_name=args["runbook"],
                params=args["params"],
                plan_only=args["plan"],
                key=f"slack:command:{trigger_id}",
            )
        return Reply(
            out.text,
            out.blocks,
            in_channel=out.in_channel,
            open_modal=out.open_modal,
            modal_args=out.modal_args or {},
        )

    def _roles(self, s: Session, inc: Incident) -> Reply:
        roles = {a.role: a.user for a in svc.active_roles(s, inc)}
        lines = [
            f"• *{r.label}*: {blocks.user_ref(roles.get(r.name))}" for r in self.settings.roles
        ]
        return Reply(f"*{inc.ref} roles*\n" + "\n".join(lines))
