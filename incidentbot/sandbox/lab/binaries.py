"""Finding the programs the lab runs: anvil (npm), HAProxy (Debian), supervisord (Python).

anvil comes from the npm package ``@foundry-rs/anvil`` pinned in the repository's
``package.json``. That package is a small Node launcher; the binary itself ships in an
optional per-platform package (``@foundry-rs/anvil-linux-amd64`` and so on) that npm installs
next to it. The lab runs that binary directly, so supervisord's signals reach anvil itself.
Older installs may have it where the package's own post-install step puts it when the
platform package is missing (``@foundry-rs/anvil/anvil``).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

import incidentbot

REPO_ROOT = Path(incidentbot.__file__).resolve().parent.parent
ANVIL_ENV = "INCIDENTBOT_ANVIL"
HAPROXY_ENV = "INCIDENTBOT_HAPROXY"

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_OS = {"linux": "linux", "darwin": "darwin"}


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _node_modules() -> list[Path]:
    seen: list[Path] = []
    for base in (Path.cwd(), REPO_ROOT):
        candidate = (base / "node_modules").resolve()
        if candidate not in seen:
            seen.append(candidate)
    return seen


def find_anvil() -> Path | None:
    """$INCIDENTBOT_ANVIL, else the binary npm installed (./node_modules, then the
    repository's), else ``anvil`` on PATH (a Foundry install)."""
    override = os.environ.get(ANVIL_ENV)
    if override:
        path = Path(override)
        return path if _executable(path) else None
    system = _OS.get(sys.platform)
    arch = _ARCH.get(platform.machine().lower())
    for modules in _node_modules():
        scope = modules / "@foundry-rs"
        if not scope.is_dir():
            continue
        candidates = []
        if system and arch:
            candidates.append(scope / f"anvil-{system}-{arch}" / "bin" / "anvil")
        # Whatever platform package npm chose, then the post-install fallbacks.
        candidates += sorted(scope.glob("anvil-*/bin/anvil"))
        candidates += [scope / "anvil" / "anvil", scope / "dist" / "anvil"]
        for candidate in candidates:
            if _executable(candidate):
                return candidate
    found = shutil.which("anvil")
    # node_modules/.bin/anvil is the Node launcher, not the binary.
    if found and "node_modules" not in Path(found).parts:
        return Path(found)
    return None


def find_haproxy() -> Path | None:
    """$INCIDENTBOT_HAPROXY, else ``haproxy`` on PATH or in /usr/sbin (Debian's place)."""
    override = os.environ.get(HAPROXY_ENV)
    if override:
        path = Path(override)
        return path if _executable(path) else None
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def missing() -> list[str]:
    """What is not installed, each with how to install it (empty when all is there)."""
    problems = []
    if find_anvil() is None:
        problems.append(
            "anvil not found: run `npm ci` in the repository (package.json pins "
            f"@foundry-rs/anvil) or set {ANVIL_ENV}"
        )
    if find_haproxy() is None:
        problems.append(f"haproxy not found: apt-get install haproxy (or set {HAPROXY_ENV})")
    return problems
