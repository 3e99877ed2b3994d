"""Publishing: the Markdown and the HTML written to ``postmortems.publish_dir``, the postmortem
marked published with the path, in one transaction (the caller's)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import Session

from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.people import Directory
from incidentbot.postmortems import lifecycle
from incidentbot.postmortems.contents import Document
from incidentbot.postmortems.models import DRAFT, PUBLISHED
from incidentbot.postmortems.render import render


@dataclass(frozen=True)
class Published:
    markdown: Path
    html: Path
    document: Document
    again: bool  # it was published before: the files were replaced


def publish_dir(settings: Settings) -> Path:
    folder = settings.postmortems.publish_dir or (settings.data_dir / "postmortems")
    return Path(folder).resolve()


def file_stem(incident: Incident) -> str:
    return f"{incident.ref}-postmortem"


def publish(
    session: Session,
    settings: Settings,
    incident: Incident,
    *,
    actor: str,
    now: datetime,
    names: Directory | None = None,
) -> Published:
    """Write ``INC-n-postmortem.md`` and ``.html`` to the publish directory and mark the
    postmortem published. Only a postmortem in review (or already published, to refresh the
    files) can be published."""
    row = lifecycle.ensure(session, settings, incident, now=now)
    if row.status == DRAFT:
        raise DomainError(
            f"the {incident.ref} postmortem is a draft: move it to review first (status in_review)"
        )
    again = row.status == PUBLISHED
    folder = publish_dir(settings)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DomainError(f"cannot create the publish directory {folder}: {exc.strerror}") from None
    md_path = folder / f"{file_stem(incident)}.md"
    html_path = folder / f"{file_stem(incident)}.html"
    lifecycle.change_status(
        session,
        settings,
        incident,
        PUBLISHED,
        actor=actor,
        now=now,
        published_path=str(md_path),
    )
    session.flush()
    markdown = render(session, settings, incident, "md", postmortem=row, names=names)
    page = render(session, settings, incident, "html", postmortem=row, names=names)
    for path, text in ((md_path, markdown.text), (html_path, page.text)):
        _write(path, text)
    return Published(md_path, html_path, markdown.document, again)


def _write(path: Path, text: str) -> None:
    """Replace the file at once: a reader sees the old document or the new, never half."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise DomainError(f"cannot write {path}: {exc.strerror}") from None
