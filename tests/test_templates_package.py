"""The Jinja2 templates people customise: one copy in the top-level templates/ directory, and
the wheel the Dockerfile builds carries them as ``incidentbot_templates``, where an installed
incidentbot finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from incidentbot.handoff import service as handoff
from incidentbot.postmortems import render
from incidentbot.template_files import TEMPLATES

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (ROOT / "templates").glob("*.j2"))


def test_one_copy_in_the_top_level_directory_is_what_the_code_reads() -> None:
    assert {"postmortem.md.j2", "postmortem.html.j2", "handoff.md.j2", "report.html.j2"} <= set(
        SHIPPED
    )
    assert TEMPLATES == ROOT / "templates"
    assert handoff.TEMPLATES == TEMPLATES and render.PACKAGE_TEMPLATES == TEMPLATES
    strays = [p for p in (ROOT / "incidentbot").rglob("*.j2")]
    assert strays == [], "a template outside templates/ is a second copy"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # As the Dockerfile builds it (build isolation fetches setuptools from the package index).
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out, ROOT],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("incidentbot-*.whl")
    return built


def test_the_wheel_carries_every_template(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n.split("/", 1)[1] for n in names if n.startswith("incidentbot_templates/")) == (
        SHIPPED
    )
    assert not [n for n in names if n.startswith("templates/")]


def test_an_installed_wheel_renders_from_its_own_templates(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "from incidentbot.template_files import TEMPLATES; import incidentbot; "
        "print(TEMPLATES); print(incidentbot.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    where, module = result.stdout.splitlines()
    assert Path(module).is_relative_to(site)
    assert Path(where) == site / "incidentbot_templates"
    assert sorted(p.name for p in Path(where).glob("*.j2")) == SHIPPED
