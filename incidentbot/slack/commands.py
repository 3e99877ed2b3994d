"""``/incident`` subcommands: parse, look the subcommand up in the table, call its handler.

Kept apart from Bolt so that it is plain Python: a :class:`Reply` comes back and the Bolt
listener acknowledges Slack with it. The handlers (:mod:`incidentbot.slack.incident_commands`)
call the use cases, which commit a change and the durable effects it needs in one transaction;
the reply is only what the user sees at once.
"""

from __future__ import annotations

from typing import Any

from incidentbot import db
from incidentbot.chat_text import mrkdwn, mrkdwn_refusal
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.slack import incident_commands
from incidentbot.slack.action_commands import ActionCommands
from incidentbot.slack.command_table import SUBCOMMANDS
from incidentbot.slack.grammar import Usage, parse
from incidentbot.slack.handoff_commands import HandoffCommands
from incidentbot.slack.incident_commands import Call
from incidentbot.slack.postmortem_commands import PostmortemCommands
from incidentbot.slack.reply import Reply
from incidentbot.slack.runbook_commands import RunbookCommands
from incidentbot.usecases import incidents as uc
from incidentbot.usecases.core import Actor, Core


class CommandHandler:
    def __init__(
        self,
        core: Core,
        runbooks: RunbookCommands | None = None,
        actions: ActionCommands | None = None,
        postmortems: PostmortemCommands | None = None,
        handoff: HandoffCommands | None = None,
    ):
        self.core = core
        self.settings = core.settings
        self.engine = core.engine
        self.runbooks = runbooks
        self.actions = actions
        self.postmortems = postmortems
        self.handoff = handoff

    def handle(self, *, user_id: str, channel_id: str, text: str, trigger_id: str) -> Reply:
        # The incident of the channel is read only if something asks for it: the grammar (a
        # bare command, a channel-only subcommand) or the handler. A declare typed anywhere
        # never does, so its acknowledgement waits on no read.
        call = Call(self, user_id, channel_id, trigger_id)
        parsed = parse(
            text, settings=self.settings, in_incident_channel=lambda: call.incident is not None
        )
        if isinstance(parsed, Usage):
            return Reply(parsed.text())
        sub = SUBCOMMANDS[parsed.name]
        try:
            return sub.handler(call, parsed.args)
        except DomainError as exc:
            message = str(exc)
            # It may quote what was typed; the mentions the bot built from what it knows (the
            # incident's people, the runbook access rules) stay mentions.
            people, groups = self._known_markup(user_id, call.incident)
            message = mrkdwn_refusal(message, [*people, *exc.people], groups)
            return Reply(f"{message[:1].upper()}{message[1:]}.\nUsage: {mrkdwn(sub.usage)}")

    def incident_in(self, channel_id: str) -> Incident | None:
        """The incident whose channel this is (None: any other channel)."""
        with db.read(self.engine) as s:
            return svc.get_by_channel(s, channel_id)

    def _known_markup(self, user: str, incident: Incident | None) -> tuple[list[str], set[str]]:
        """Mentions the bot builds into its refusals: who asked, the commander, and the people
        and groups of the runbook access rules."""
        rules = self.settings.runbooks.access
        users = [u for r in rules for u in (*r.users, *r.approvers)]
        groups = {g for r in rules for g in (*r.groups, *r.approver_groups)}
        commander = incident.commander if incident is not None else None
        return [p for p in (user, commander, *users) if p], groups

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
        private: bool = False,
    ) -> Reply:
        """The declare form's submission (the ``declare`` subcommand has its own handler)."""
        out = uc.declare(
            self.core,
            Actor(user, "slack"),
            title=title,
            severity=severity,
            description=description,
            fields=fields,
            commander=commander,
            impact_started_at=impact_started_at,
            service=service,
            key=key,
            private=private,
        )
        return incident_commands.declared(user, out)
