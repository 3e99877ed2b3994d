"""Where the vendors' API descriptions live, for every local server's conformance checks.

They ship with the package, in ``incidentbot/sandbox/apispecs/`` (see its README): Slack's
Web API and Events API descriptions as published (MIT), and PagerDuty's compact contract
derived from its REST and Events descriptions (``scripts/pagerduty-contract`` regenerates it
from the full files). So a clone, or an installed package, checks conformance with nothing
beside it. ``$INCIDENTBOT_SPECS_DIR`` points elsewhere, e.g. at newer descriptions to try.
A missing file is a ``SpecUnavailable`` rather than a ``FileNotFoundError``, with a message
that says where it was looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

SPECS_ENV = "INCIDENTBOT_SPECS_DIR"
VENDORED_DIR = Path(__file__).resolve().parent / "apispecs"


class SpecUnavailable(RuntimeError):
    """A vendor description is not where it should be (see ``find_specs_dir``)."""


def find_specs_dir(*required: str) -> Path:
    """``$INCIDENTBOT_SPECS_DIR``, else the package's ``apispecs``; it must hold ``required``."""
    override = os.environ.get(SPECS_ENV)
    path = Path(override) if override else VENDORED_DIR
    missing = [name for name in required if not (path / name).is_file()]
    if missing or not path.is_dir():
        names = ", ".join(missing) or "the specs directory"
        hint = f"unset {SPECS_ENV} to use the vendored ones" if override else "reinstall"
        raise SpecUnavailable(f"{names} not found in {path} ({hint})")
    return path
