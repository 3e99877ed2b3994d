"""A clone has everything the conformance checks load, and they look nowhere else.

A user's clone has no folder of shared files beside it, and an installed package has no
repository at all: the descriptions must be tracked by git, shipped as package data, and
found inside the package unless ``$INCIDENTBOT_SPECS_DIR`` says otherwise.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from incidentbot.sandbox.pagerduty import spec as pagerduty_spec
from incidentbot.sandbox.slack import spec as slack_spec
from incidentbot.sandbox.specs import SPECS_ENV, VENDORED_DIR, find_specs_dir

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "incidentbot"
# Every file the conformance checks read by default, and what must travel with them.
LOADED = (slack_spec.WEB_SPEC, slack_spec.EVENTS_SPEC, pagerduty_spec.CONTRACT)
SHIPPED = (*LOADED, "LICENSE.slack-api-specs", "README.md")


@pytest.fixture(autouse=True)
def _defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SPECS_ENV, raising=False)


def test_the_loaders_read_from_the_package_by_default() -> None:
    assert VENDORED_DIR == PACKAGE / "sandbox" / "apispecs"
    assert find_specs_dir(*LOADED) == VENDORED_DIR
    assert slack_spec.find_specs_dir() == VENDORED_DIR
    assert slack_spec.load_spec().has_method("chat.postMessage")
    assert pagerduty_spec.load_spec().operation("rest", "POST /incidents") is not None


def test_every_loaded_file_is_tracked_by_git_and_shipped_in_the_package() -> None:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--", "incidentbot/sandbox/apispecs"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(Path(p).name for p in listed) == sorted(SHIPPED)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["incidentbot"]
    for name in SHIPPED:
        relative = f"sandbox/apispecs/{name}"
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} not shipped"


def test_the_slack_files_are_the_published_ones_with_their_licence() -> None:
    readme = (VENDORED_DIR / "README.md").read_text(encoding="utf-8")
    for name in (slack_spec.WEB_SPEC, slack_spec.EVENTS_SPEC):
        recorded = re.search(rf"`{re.escape(name)}`.*?sha256 `([0-9a-f]{{64}})`", readme)
        assert recorded, f"{name}: no sha256 in the README"
        digest = hashlib.sha256((VENDORED_DIR / name).read_bytes()).hexdigest()
        assert digest == recorded.group(1), f"{name} differs from the published file"
    licence = (VENDORED_DIR / "LICENSE.slack-api-specs").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "SlackAPI" in licence


def test_nothing_looks_for_descriptions_beside_the_repository() -> None:
    """The old layout (a specs folder beside the repository) is gone from code and tests."""
    offenders = [
        str(path.relative_to(ROOT))
        for top in (PACKAGE, ROOT / "tests", ROOT / "scripts")
        for path in top.rglob("*")
        if path.is_file()
        and path.suffix in (".py", "")
        and path != Path(__file__)
        and re.search(r"shared[/\"' ,)]+specs|\.\./shared", path.read_text(errors="replace"))
    ]
    assert offenders == []
