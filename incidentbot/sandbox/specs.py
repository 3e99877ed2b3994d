"""Where the vendors' API descriptions live, for every local server's conformance checks.

The descriptions are reference data kept beside the repository (``<repo>/../shared/specs``, the
way CI lays things out), not inside the package, so each sandbox finds them the same way here.
``$INCIDENTBOT_SPECS_DIR`` points elsewhere. A missing file is a ``SpecUnavailable`` rather
than a ``FileNotFoundError`` so tests can skip (or, in CI, fail) with a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path

SPECS_ENV = "INCIDENTBOT_SPECS_DIR"


class SpecUnavailable(RuntimeError):
    """A vendor description is not where it should be (see ``find_specs_dir``)."""


def find_specs_dir(*required: str) -> Path:
    """``$INCIDENTBOT_SPECS_DIR``, else ``<repo>/../shared/specs``; it must hold ``required``."""
    override = os.environ.get(SPECS_ENV)
    path = Path(override) if override else Path(__file__).resolve().parents[3] / "shared" / "specs"
    missing = [name for name in required if not (path / name).is_file()]
    if missing or not path.is_dir():
        names = ", ".join(missing) or "the specs directory"
        raise SpecUnavailable(f"{names} not found in {path} (set {SPECS_ENV})")
    return path
