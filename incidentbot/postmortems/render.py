"""Rendering a :class:`~incidentbot.postmortems.contents.Document` to Markdown or HTML.

The templates are Jinja2 files, ``postmortem.md.j2`` and ``postmortem.html.j2``: the package's
own, unless ``postmortems.template_dir`` holds one of the same name (the other still comes from
the package). HTML is autoescaped; the Markdown template escapes with the ``md`` filters. The
output depends on the document only: no clock, stable ordering, one trailing newline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)
from markupsafe import Markup, escape
from sqlmodel import Session

from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.people import Directory
from incidentbot.postmortems.config import PACKAGE_TEMPLATES
from incidentbot.postmortems.contents import Document, Entry
from incidentbot.postmortems.document import build
from incidentbot.postmortems.heap import collector_paused
from incidentbot.postmortems.models import Postmortem

FORMATS = {"md": "postmortem.md.j2", "html": "postmortem.html.j2"}
SUFFIXES = {"md": ".md", "html": ".html"}

# -- Markdown ----------------------------------------------------------------------------------

_MD_ALWAYS = re.compile(r"([\\`*\[\]<>|])")
_MD_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_MD_LINE_START = re.compile(r"^(\s*)([#+=-]|\d+[.)])(?=\s|$)", re.MULTILINE)


_MD_ANY = re.compile(r"[\\`*\[\]<>|_\n\r]")


def md(value: object, indent: int = 0) -> str:
    """Text as literal Markdown: special characters escaped, lines kept (hard breaks, the
    continuation indented by ``indent`` spaces, e.g. inside a list item)."""
    text = str(value).replace("\r\n", "\n").strip()
    if not _MD_ANY.search(text) and not _MD_LINE_START.match(text):
        return text  # one line with nothing to escape (most of a long timeline)
    text = _MD_ALWAYS.sub(r"\\\1", text)
    text = _MD_EDGE_UNDERSCORE.sub(r"\\_", text)
    text = _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line] or [""]
    return ("\\\n" + " " * indent).join(lines)


def md_cell(value: object) -> str:
    """Text for a Markdown table cell: escaped, on one line."""
    text = str(value).replace("\r\n", "\n").strip()
    text = _MD_ALWAYS.sub(r"\\\1", text)
    text = _MD_EDGE_UNDERSCORE.sub(r"\\_", text)
    return "<br>".join(line.strip() for line in text.split("\n") if line.strip())


def code(value: object) -> str:
    """A Markdown code span that survives backticks in the value."""
    text = " ".join(str(value).split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def timeline_md(entries: list[Entry]) -> str:
    """The timeline's Markdown list, each string escaped once (an actor once for all the
    entries that are theirs): a long incident has thousands of entries. A template may loop
    over ``d.timeline`` itself instead."""
    actors: dict[str, str] = {}
    lines = []
    for e in entries:
        who = actors.get(e.actor)
        if who is None:
            who = actors[e.actor] = md(e.actor)
        label = e.label
        tag = f"*{label}:* " if label else ""
        lines.append(f"- **{e.at}** {who} · {tag}{md(e.text, 2)}")
    return "\n".join(lines)


def link_md(label: object, url: str) -> str:
    target = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return f"[{md(label)}]({target})"


# -- HTML --------------------------------------------------------------------------------------


def paragraphs(value: object) -> Markup:
    """What people wrote, as HTML: blank lines separate paragraphs, lines starting with ``-``,
    ``*`` or ``+`` are list items; everything is escaped."""
    text = str(value).replace("\r\n", "\n").strip()
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        # Runs of lines of one kind: ("li", [items]) or ("p", [lines]).
        runs: list[tuple[str, list[str]]] = []
        for line in (x.strip() for x in block.split("\n")):
            if not line:
                continue
            bullet = re.match(r"^[-*+]\s+(.*)$", line)
            kind, content = ("li", bullet.group(1)) if bullet else ("p", line)
            if runs and runs[-1][0] == kind:
                runs[-1][1].append(content)
            else:
                runs.append((kind, [content]))
        for kind, items in runs:
            if kind == "li":
                lis = "\n".join(f"<li>{escape(x)}</li>" for x in items)
                out.append(f"<ul>\n{lis}\n</ul>")
            else:
                out.append("<p>" + "<br>\n".join(str(escape(x)) for x in items) + "</p>")
    return Markup("\n".join(out))  # noqa: S704 - every piece above is escaped


def lines_html(value: object) -> Markup:
    """Text on one or more lines: escaped, line breaks kept."""
    return Markup(_lines(value))  # noqa: S704 - escaped


_HTML_SPECIAL = re.compile(r"[&<>'\"]")


def _esc(text: str) -> str:
    """HTML-escaped, as markupsafe escapes, without building a Markup for each string."""
    if not _HTML_SPECIAL.search(text):
        return text
    return (
        text.replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def _lines(value: object) -> str:
    text = str(value).replace("\r\n", "\n").strip()
    if "\n" not in text:
        return _esc(text)
    return "<br>\n".join(_esc(line) for line in text.split("\n"))


def timeline_html(entries: list[Entry]) -> Markup:
    """The timeline's table rows, each string escaped once: a long incident has thousands of
    rows, and a template loop escapes every value again. A template may loop over
    ``d.timeline`` itself instead."""
    rows = []
    actors: dict[str, str] = {}
    # The row's opening and the tag, by category and label (a handful of each), escaped once.
    heads: dict[tuple[str, str], tuple[str, str]] = {}
    for e in entries:
        head = heads.get((e.category, e.label))
        if head is None:
            label = e.label
            head = heads[(e.category, label)] = (
                f'<tr class="cat-{_esc(e.category)}"><td class="at">',
                f'<span class="tag">{_esc(label)}</span> ' if label else "",
            )
        who = actors.get(e.actor)
        if who is None:
            who = actors[e.actor] = _esc(e.actor)
        rows.append(
            f'{head[0]}{_esc(e.at)}</td><td class="who">{who}</td>'
            f'<td class="what">{head[1]}{_lines(e.text)}</td></tr>'
        )
    return Markup("\n".join(rows))  # noqa: S704 - every value above is escaped


# -- the environment ---------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _environment(template_dir: str | None) -> Environment:
    loaders = []
    if template_dir is not None:
        loaders.append(FileSystemLoader(template_dir))
    loaders.append(FileSystemLoader(str(PACKAGE_TEMPLATES)))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        md=md,
        md_cell=md_cell,
        code=code,
        link_md=link_md,
        timeline_md=timeline_md,
        paragraphs=paragraphs,
        lines=lines_html,
        timeline_rows=timeline_html,
    )
    return env


def environment(settings: Settings) -> Environment:
    folder = settings.postmortems.template_dir
    if folder is not None and not Path(folder).is_dir():
        raise DomainError(
            f"postmortems.template_dir {folder} is not a directory: create it or unset it"
        )
    return _environment(str(Path(folder).resolve()) if folder is not None else None)


def check_format(fmt: str) -> str:
    clean = str(fmt).strip().lower().lstrip(".")
    clean = {"markdown": "md", "htm": "html"}.get(clean, clean)
    if clean not in FORMATS:
        raise DomainError(f"unknown format {fmt!r}: allowed are md, html")
    return clean


@dataclass(frozen=True)
class Rendered:
    text: str
    document: Document


def render_document(settings: Settings, doc: Document, fmt: str) -> str:
    fmt = check_format(fmt)
    env = environment(settings)
    try:
        template = env.get_template(FORMATS[fmt])
        with collector_paused():
            out = template.render(d=doc)
    except TemplateError as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        name = getattr(exc, "name", None) or FORMATS[fmt]
        raise DomainError(f"the postmortem template {name}{where} failed: {exc}") from None
    return _tidy(out, markdown=fmt == "md")


def _tidy(text: str, *, markdown: bool) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    if markdown:
        out: list[str] = []
        for line in lines:
            if not line and out and not out[-1]:
                continue  # one blank line between blocks is enough
            out.append(line)
        lines = out
    return "\n".join(lines).strip("\n") + "\n"


def render(
    session: Session,
    settings: Settings,
    incident: Incident,
    fmt: str,
    *,
    postmortem: Postmortem | None = None,
    names: Directory | None = None,
) -> Rendered:
    """Build the document of ``incident`` and render it as ``md`` or ``html``."""
    doc = build(session, settings, incident, postmortem=postmortem, names=names)
    return Rendered(render_document(settings, doc, fmt), doc)
