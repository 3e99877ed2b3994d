"""``/incident postmortem``: the postmortem of the channel's incident from Slack.

``/incident postmortem`` summarises the draft in the channel. People's names are looked up in
Slack (``users.info``) first, for everyone the document names whose name the bot does not know
yet or last read more than a day ago; a bounded number within a time budget, since Slack waits
three seconds for the answer. The Markdown is rendered (so a broken template shows here and not
at publishing), and the channel gets a summary: status, due date, metrics, what is written, the
language check's findings, where the document is published, and the command that renders it in
full. The local Slack server, like many workspaces' policies, offers no file upload, so the
document itself is not posted.

``postmortem edit <section>`` opens a form holding the section's current text; its submission
saves through :func:`incidentbot.usecases.postmortems.edit`. ``postmortem status <status>`` and
``postmortem publish`` move the postmortem along, as the command line does.

:func:`parse` reads the words after ``postmortem``; :meth:`PostmortemCommands.handle` answers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_sdk.models.blocks import InputBlock, PlainTextInputElement, PlainTextObject
from slack_sdk.models.views import View
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.chat_text import mrkdwn
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.people import lookup as people
from incidentbot.ports import Chat
from incidentbot.postmortems import lifecycle
from incidentbot.postmortems.blameless import Finding
from incidentbot.postmortems.contents import Document
from incidentbot.postmortems.document import people_in
from incidentbot.slack import impact_form
from incidentbot.slack.postmortem_picker import section_picker
from incidentbot.slack.reply import Reply
from incidentbot.usecases import postmortems as uc
from incidentbot.usecases.core import Actor, Core

log = logging.getLogger(__name__)

MAX_FINDINGS = 8
MAX_SUMMARY = 600
EDIT_CALLBACK = "postmortem_edit"
FORM_LIMIT = 3000  # the most a Slack plain-text input holds
USAGE = "/incident postmortem [edit [section] | status <draft|in_review|published> | publish]"
USAGES = {
    "summary": "/incident postmortem",
    "edit": f"/incident postmortem edit [{'|'.join(lifecycle.SECTION_KEYS)}]",
    "status": "/incident postmortem status <draft|in_review|published>",
    "publish": "/incident postmortem publish",
}


def parse(rest: str, settings: Settings | None = None) -> dict[str, Any]:
    """``{"op": ...}`` for the words after ``postmortem`` (already normalised), or a
    DomainError saying what is wrong."""
    head, _, tail = rest.strip().partition(" ")
    op, tail = head.lower(), tail.strip()
    if not op:
        return {"op": "summary"}
    if op == "edit":
        if not tail:
            return {"op": "pick"}  # a form to choose one
        return {"op": "edit", "section": lifecycle.section_key(tail, settings)}
    if op == "status":
        if not tail:
            raise DomainError("`postmortem status` needs a status: draft, in_review or published")
        return {"op": "status", "status": lifecycle.status_name(tail)}
    if op == "publish":
        if tail:
            raise DomainError("`postmortem publish` takes no arguments")
        return {"op": "publish"}
    shown = head if len(head) <= 40 else head[:40] + "…"
    raise DomainError(f"unknown postmortem subcommand `{shown}`: use edit, status or publish")


class PostmortemCommands:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        chat: Chat | None,
        *,
        lookup_budget: float = 1.5,
        lookup_limit: int = 25,
        core: Core | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.chat = chat
        self.lookup_budget = lookup_budget
        self.lookup_limit = lookup_limit
        self.core = core or Core(settings, engine)

    def handle(self, args: dict[str, Any], *, user: str, incident: Incident) -> Reply:
        """One ``/incident postmortem …`` (``args`` from :func:`parse`) in ``incident``'s
        channel."""
        op = args.get("op", "summary")
        try:
            if op == "edit":
                return self._edit_form(args["section"], incident)
            if op == "pick":
                view = section_picker(uc.sections_written(self.core, incident.ref),
                                      incident.channel_id or "")  # fmt: skip
                return Reply(f"Opening the {incident.ref} postmortem's sections…",
                             open_modal=True, modal_args={"view": view})  # fmt: skip
            if op == "status":
                return self._status(user, incident, args["status"])
            if op == "publish":
                return _published(user, uc.publish(self.core, Actor(user, "slack"), incident.ref))
            return self.summary(user=user, incident=incident)
        except DomainError as exc:
            message = mrkdwn(str(exc))
            usage = USAGES.get(op, USAGE)
            if op == "edit":
                keys = "|".join(x.key for x in lifecycle.sections_for(self.settings))
                usage = f"/incident postmortem edit [{keys}]"
            usage = mrkdwn(usage)
            return Reply(f"{message[:1].upper()}{message[1:]}.\nUsage: {usage}")

    def summary(self, *, user: str, incident: Incident) -> Reply:
        if self.chat is not None:
            with db.transaction(self.engine) as s:
                who = people_in(s, self.settings, incident)
            try:
                people.refresh(
                    self.engine,
                    self.chat,
                    who,
                    now=utcnow(),
                    budget=self.lookup_budget,
                    limit=self.lookup_limit,
                )
            except Exception as exc:  # names are a nicety: the summary goes out regardless
                log.warning("could not look up names for %s: %s", incident.ref, exc)
        out = uc.summary(self.core, incident.ref)
        return Reply(message(out.document, out.markdown_bytes), in_channel=True)

    def _status(self, user: str, incident: Incident, status: str) -> Reply:
        changed = uc.change_status(self.core, Actor(user, "slack"), incident.ref, status)
        if changed.published is not None:
            return _published(user, changed.published)
        old = lifecycle.STATUS_LABELS[changed.old].lower()
        new = lifecycle.STATUS_LABELS[changed.new].lower()
        return Reply(
            f":memo: <@{user}> moved the *{changed.ref} postmortem*: {old} → *{new}*",
            in_channel=True,
        )

    # -- the edit form ---------------------------------------------------------------------------

    def _edit_form(self, section: str, incident: Incident) -> Reply:
        name, view = self.edit_form(incident.ref, section, incident.channel_id or "")
        return Reply(
            f"Opening {name} of the {incident.ref} postmortem…",
            open_modal=True,
            modal_args={"view": view},
        )

    def edit_form(self, ref: str, section: str, channel_id: str) -> tuple[str, dict[str, Any]]:
        """(the section's name, the form that edits it), or a DomainError saying why not."""
        current = uc.section_text(self.core, ref, section)
        name = current.title.lower()
        if len(current.text) > FORM_LIMIT:
            raise DomainError(
                f"{name} is {len(current.text)} characters long, more than a Slack form holds "
                f"({FORM_LIMIT}): edit it with `incidentbot postmortem edit {ref} "
                f"--section {current.section} --file FILE`"
            )
        return name, edit_view(current, channel_id)

    def submit_edit(
        self, user: str, view: dict[str, Any]
    ) -> tuple[dict[str, str] | None, Reply | None, str]:
        """(per-field errors, reply, channel) for a submitted edit form. An empty text
        clears the section."""
        meta = json.loads(view.get("private_metadata") or "{}")
        channel = str(meta.get("channel") or "")
        values = view.get("state", {}).get("values", {})
        text = ((values.get("text") or {}).get("value") or {}).get("value") or ""
        numbers = impact_form.changed(values, meta.get("impact"))
        try:
            done = uc.edit(self.core, Actor(user, "slack"), str(meta.get("ref") or ""),
                           section=str(meta.get("section") or ""),
                           text=text if text.strip() else None, impact=numbers)  # fmt: skip
        except uc.ImpactError as exc:
            return impact_form.errors(exc.errors), None, channel
        except DomainError as exc:
            return {"text": str(exc)[:150]}, None, channel
        return None, Reply(_saved(done)), channel


def edit_view(current: uc.SectionText, channel_id: str) -> dict[str, Any]:
    """The form that edits one section: its text, prefilled, and what belongs in it."""
    meta: dict[str, Any] = {"ref": current.ref, "section": current.section, "channel": channel_id}
    extra: list[Any] = []
    if current.section == "impact":
        meta["impact"] = current.impact  # what was typed: only changes are saved
        extra = impact_form.blocks(current.impact)
    view = View(
        type="modal",
        callback_id=EDIT_CALLBACK,
        title=PlainTextObject(text=f"{current.ref} postmortem"[:24]),
        submit=PlainTextObject(text="Save"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(meta),
        blocks=[
            InputBlock(
                block_id="text",
                label=current.title,
                hint=(current.prompt + " Leave it empty to clear the section.")[:2000],
                optional=True,
                element=PlainTextInputElement(
                    action_id="value",
                    multiline=True,
                    max_length=FORM_LIMIT,
                    initial_value=current.text or None,
                ),
            ),
            *extra,
        ],
    )
    view.validate_json()
    return view.to_dict()


def _findings(findings: tuple[Finding, ...] | list[Finding]) -> list[str]:
    lines = []
    for f in findings[:MAX_FINDINGS]:
        section = f.section.replace("_", " ").capitalize()
        lines.append(f"• {section}, line {f.line}: “{mrkdwn(f.phrase)}”: {mrkdwn(f.suggestion)}")
    if len(findings) > MAX_FINDINGS:
        lines.append(f"• … and {len(findings) - MAX_FINDINGS} more")
    return lines


def _saved(done: uc.Edited) -> str:
    name = (done.section or "").replace("_", " ")
    status = lifecycle.STATUS_LABELS[done.status]
    if done.cleared:
        text = f"Cleared {name} in the {done.ref} postmortem ({status})."
    else:
        text = f"Saved {name} in the {done.ref} postmortem ({done.chars} characters, {status})."
    if done.impact:
        text += "\nImpact numbers: " + "; ".join(
            f"{n.label.lower()} {mrkdwn(n.value)}"
            if n.state == "typed"
            else f"{n.label.lower()} cleared"
            for n in done.impact
        )
    if done.findings:
        n = len(done.findings)
        text += (
            f"\n:warning: *Language check*: {_plural(n, 'passage')} may read as blaming people:\n"
            + "\n".join(_findings(done.findings))
        )
    return text


def _published(user: str, done: uc.Published) -> Reply:
    again = " again" if done.again else ""
    text = (
        f":memo: <@{user}> published the *{done.ref} postmortem*{again}: "
        f"`{mrkdwn(done.markdown)}` (and the `.html` beside it)"
    )
    if done.document.findings:
        n = len(done.document.findings)
        text += f"\n:warning: The language check found {_plural(n, 'passage')} that may blame."
    return Reply(text, in_channel=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def message(doc: Document, markdown_bytes: int) -> str:
    """The channel's summary of the postmortem (Slack mrkdwn, user text escaped)."""
    head = [doc.status_label]
    head.append(doc.requirement)
    if doc.due:
        head.append(f"due {doc.due}")
    if doc.owner:
        head.append(f"owner {mrkdwn(doc.owner)}")
    lines = [f":memo: *{doc.ref} postmortem*: " + " · ".join(head)]
    lines.append(f"*{mrkdwn(doc.title)}* ({doc.incident_status}, {doc.severity})")
    summary = doc.section("summary").text or doc.summary or "no summary yet"
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    lines.append(f"*Summary:* {mrkdwn(summary)}")
    lines.append(
        "*Metrics:* "
        + " · ".join(f"{m.label.removeprefix('Time to ')} {mrkdwn(m.value)}" for m in doc.metrics)
    )
    if doc.impact_given:
        lines.append(
            "*Impact:* "
            + " · ".join(f"{n.label.lower()} {mrkdwn(n.value)}" for n in doc.impact_given)
        )
    todo = [s.title.lower() for s in doc.sections if not s.written]
    written = f"*Written:* {doc.sections_written} of {len(doc.sections)} sections"
    lines.append(written + (f" (to write: {', '.join(todo)})" if todo else ""))
    runs = {}
    for r in doc.runs:
        runs[r.outcome] = runs.get(r.outcome, 0) + 1
    if doc.runs:
        detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(runs.items()))
        lines.append(f"*Runbook runs:* {len(doc.runs)} ({detail})")
    if doc.action_items:
        still_open = sum(1 for a in doc.action_items if a.status == "open")
        lines.append(f"*Action items:* {len(doc.action_items)} ({still_open} open)")
    for problem in doc.order_problems:
        lines.append(f":warning: Milestones out of order: {mrkdwn(problem)}")
    if doc.findings:
        lines.append(
            f":warning: *Language check*: {_plural(len(doc.findings), 'passage')} may read as "
            "blaming people:"
        )
        lines += _findings(doc.findings)
    elif doc.sections_written:
        lines.append(":white_check_mark: Language check: no blaming language found.")
    if doc.published_path:
        lines.append(f"*Published:* `{mrkdwn(doc.published_path)}` (and the `.html` beside it)")
    kb = max(1, round(markdown_bytes / 1024))
    lines.append(
        f"Full document ({kb} KB of Markdown): "
        f"`incidentbot postmortem render {doc.ref} --format html --out {doc.ref}-postmortem.html`"
        "; write a section with `/incident postmortem edit <section>` (or "
        f"`incidentbot postmortem edit {doc.ref} --section NAME --file FILE`)."
    )
    return "\n".join(lines)
