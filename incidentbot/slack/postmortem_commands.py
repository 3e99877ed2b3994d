"""``/incident postmortem``: the postmortem draft of the channel's incident, summarised in the
channel.

People's names are looked up in Slack (``users.info``) first, for everyone the document names
whose name the bot does not know yet or last read more than a day ago; a bounded number within
a time budget, since Slack waits three seconds for the answer. The Markdown is rendered (so a
broken template shows here and not at publishing), and the channel gets a summary: status,
due date, metrics, what is written, the language check's findings, where the document is
published, and the command that renders it in full. The local Slack server, like many
workspaces' policies, offers no file upload, so the document itself is not posted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.chat_text import mrkdwn
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident
from incidentbot.ports import Chat
from incidentbot.postmortems import people
from incidentbot.postmortems.contents import Document
from incidentbot.postmortems.document import build, people_in
from incidentbot.postmortems.render import render_document

log = logging.getLogger(__name__)

MAX_FINDINGS = 8
MAX_SUMMARY = 600


@dataclass
class PostmortemReply:
    text: str
    in_channel: bool = True


class PostmortemCommands:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        chat: Chat | None,
        *,
        lookup_budget: float = 1.5,
        lookup_limit: int = 25,
    ):
        self.settings = settings
        self.engine = engine
        self.chat = chat
        self.lookup_budget = lookup_budget
        self.lookup_limit = lookup_limit

    def summary(self, *, user: str, incident: Incident) -> PostmortemReply:
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
        with db.transaction(self.engine) as s:
            doc = build(s, self.settings, incident)
        markdown = render_document(self.settings, doc, "md")
        return PostmortemReply(message(doc, len(markdown.encode())))


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
    summary = doc.summary or "no resolution summary yet"
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    lines.append(f"*Summary:* {mrkdwn(summary)}")
    lines.append(
        "*Metrics:* "
        + " · ".join(f"{m.label.removeprefix('Time to ')} {mrkdwn(m.value)}" for m in doc.metrics)
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
        for f in doc.findings[:MAX_FINDINGS]:
            section = f.section.replace("_", " ").capitalize()
            lines.append(
                f"• {section}, line {f.line}: “{mrkdwn(f.phrase)}”: {mrkdwn(f.suggestion)}"
            )
        if len(doc.findings) > MAX_FINDINGS:
            lines.append(f"• … and {len(doc.findings) - MAX_FINDINGS} more")
    elif doc.sections_written:
        lines.append(":white_check_mark: Language check: no blaming language found.")
    if doc.published_path:
        lines.append(f"*Published:* `{mrkdwn(doc.published_path)}` (and the `.html` beside it)")
    kb = max(1, round(markdown_bytes / 1024))
    lines.append(
        f"Full document ({kb} KB of Markdown): "
        f"`incidentbot postmortem render {doc.ref} --format html --out {doc.ref}-postmortem.html`"
        "; write a section with "
        f"`incidentbot postmortem edit {doc.ref} --section NAME --file FILE`."
    )
    return "\n".join(lines)
