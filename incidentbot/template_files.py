"""Where the Jinja2 templates people customise live: one copy, in the top-level ``templates/``
directory of the source tree, installed with the package as ``incidentbot_templates``
(``pyproject.toml`` and ``setup.py`` map the directory). A team overrides a template by
pointing the setting of its feature at a folder of its own (docs/postmortems.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
