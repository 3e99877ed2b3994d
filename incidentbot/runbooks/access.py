"""Who may run a runbook and who may approve a run (``runbooks.access`` in the settings).

The same rules apply from every door; the user is the actor's id (a Slack user id in Slack, the
``--as``/login name in the CLI). The first rule whose ``runbooks`` patterns match the runbook's
name applies:

- a rule naming ``users`` or ``groups`` admits those users (by id, so a rule admits a CLI user
  only by naming it: ``users: [U024BE7LH, alice]``) and the members of those chat groups (looked
  up through the chat, which only a process with Slack has: from the CLI, groups admit nobody);
- without a rule, or with one naming nobody, the members of the incident's channel may run it
  in chat; from a terminal, where nobody is a channel member, whoever runs the CLI may (they
  hold the bot's database credentials and configuration already).

Approvers are the incident's commander plus the rule's ``approvers`` and members of its
``approver_groups``; the person who asked for the run never approves it. Cancelling a run is
for its requester, the commander or an approver; resuming, skipping a step of or aborting a run
that needs attention for the commander or an approver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.ports import ExternalError
from incidentbot.runbooks.config import AccessRule, RunbookSettings

if TYPE_CHECKING:
    from incidentbot.ports import Chat

# Where the request comes from, as far as the rules care: in a chat (channel membership means
# something) or from a terminal.
Where = Literal["chat", "terminal"]
Steer = Literal["cancel", "abort", "resume", "skip"]


def _in_groups(chat: Chat, groups: list[str], user: str) -> bool:
    for group in groups:
        try:
            if user in chat.usergroup_members(group):
                return True
        except ExternalError:
            continue  # a group that no longer exists grants nothing
    return False


def check_may_run(
    settings: RunbookSettings,
    name: str,
    user: str,
    *,
    incident: Incident | None,
    chat: Chat | None,
    where: Where = "chat",
) -> None:
    """Raise DomainError saying why ``user`` may not run runbook ``name`` here."""
    rule = settings.rule_for(name)
    if rule.users or rule.groups:
        if user in rule.users or (chat is not None and _in_groups(chat, rule.groups, user)):
            return
        who = ", ".join([*rule.users, *(f"<!subteam^{g}>" for g in rule.groups)])
        raise DomainError(
            f"you may not run {name}: runbooks.access allows only {who}", people=rule.users
        )
    if where == "terminal":
        return
    if incident is None or not incident.channel_id:
        raise DomainError(f"run {name} from an incident channel: its members may run runbooks")
    if chat is None:
        return
    if user not in chat.channel_members(incident.channel_id):
        raise DomainError(
            f"you may not run {name}: only members of #{incident.channel_name or 'the channel'} "
            "may run runbooks for this incident"
        )


def approvers_rule(settings: RunbookSettings, name: str) -> AccessRule:
    return settings.rule_for(name)


def check_may_approve(
    settings: RunbookSettings,
    name: str,
    user: str,
    *,
    requester: str,
    incident: Incident | None,
    chat: Chat | None,
) -> None:
    """Raise DomainError explaining why ``user`` may not approve a run of ``name``."""
    if user == requester:
        raise DomainError("you asked for this run, so someone else has to approve it")
    rule = settings.rule_for(name)
    commander = incident.commander if incident else None
    if user == commander or user in rule.approvers:
        return
    if chat is not None and _in_groups(chat, rule.approver_groups, user):
        return
    allowed = []
    if commander:
        allowed.append(f"the incident commander ({commander})")
    allowed += rule.approvers
    allowed += [f"<!subteam^{g}>" for g in rule.approver_groups]
    who = ", ".join(allowed) if allowed else "the incident commander (nobody holds the role)"
    people = [*([commander] if commander else []), *rule.approvers]
    raise DomainError(f"only {who} may approve runs of {name}", people=people)


STEER_WORDS = {"cancel": "cancel", "abort": "abort", "resume": "resume", "skip": "skip a step of"}


def check_may_steer(
    settings: RunbookSettings,
    name: str,
    user: str,
    what: Steer,
    *,
    requester: str,
    incident: Incident | None,
    chat: Chat | None,
) -> None:
    """Cancel: the requester, the commander or an approver. Resume, skip or abort a run that
    needs attention: the commander or an approver (someone who owns the decision)."""
    if what == "cancel" and user == requester:
        return
    try:
        check_may_approve(settings, name, user, requester="", incident=incident, chat=chat)
    except DomainError as exc:
        reason = str(exc).replace("may approve runs of", f"may {STEER_WORDS[what]} runs of")
        raise DomainError(reason, people=exc.people) from None


def eligible_approvers(
    settings: RunbookSettings, name: str, *, requester: str, incident: Incident | None
) -> int:
    """How many people could approve, known without asking Slack (groups count as many)."""
    rule = settings.rule_for(name)
    people = {u for u in rule.approvers if u != requester}
    if incident is not None and incident.commander and incident.commander != requester:
        people.add(incident.commander)
    return len(people) + (2 * len(rule.approver_groups))


def check_approvable(
    settings: RunbookSettings,
    name: str,
    *,
    needed: int,
    approval: str,
    requester: str,
    incident: Incident | None,
) -> None:
    """Refuse at once a run nobody could approve (rather than let it wait and expire)."""
    if not needed:
        return
    if eligible_approvers(settings, name, requester=requester, incident=incident) < needed:
        raise DomainError(
            f"runbook {name} needs {approval.replace('-', ' ')} approval and nobody but you "
            "could give it: run it for an incident with another commander, or list approvers in "
            "runbooks.access"
        )
