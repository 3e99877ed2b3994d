"""Where the Jinja2 templates people customise live: one copy, in the top-level ``templates/``
directory of the source tree, installed with the package as ``incidentbot_templates``
(``pyproject.toml`` and ``setup.py`` map the directory). A team overrides a template by
pointing the setting of its feature at a folder of its own (docs/postmortems.md#templates):
``postmortems.template_dir`` (postmortem.md.j2, postmortem.html.j2, report.html.j2) and
``handoff.template_dir`` (handoff.md.j2). A template found there replaces the shipped one of
the same name; the others still come from the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jinja2

from incidentbot.errors import DomainError

PACKAGE = "incidentbot_templates"


def directory() -> Path:
    """The templates shipped with incidentbot: the source tree's ``templates/`` when running
    from a checkout (so an edit there is seen at once), else the installed package's."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "templates").is_dir():
        return checkout / "templates"
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise RuntimeError(f"the {PACKAGE} package is missing: reinstall incidentbot")


TEMPLATES = directory()


def override_loader(folder: Path | str | None, setting: str) -> jinja2.BaseLoader:
    """Templates from ``folder`` (a team's overrides, named by ``setting``) first, then the
    shipped ones. A folder that is set but missing is refused with the setting's name."""
    shipped = jinja2.FileSystemLoader(str(TEMPLATES))
    if folder is None:
        return shipped
    path = Path(folder)
    if not path.is_dir():
        raise DomainError(f"{setting} {folder} is not a directory: create it or unset it")
    return jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(path.resolve())), shipped])
