"""The dependency rule is enforced by the lint step, not by review: scripts/lint-imports (run by
scripts/test after ruff) fails when the core imports a door, an adapter or a vendor SDK, or the
ledger imports the incidents, and says which import broke which contract.

Each case adds one forbidden import to a copy of the tree (never to the repository) and runs the
lint step there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tree_copy(dest: Path) -> Path:
    """The package, the contracts (pyproject.toml) and the lint scripts, copied."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "incidentbot", dest / "incidentbot", ignore=ignore)
    shutil.copytree(ROOT / "scripts", dest / "scripts", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run the copy's scripts/lint-imports as scripts/test runs it, with this interpreter's
    import-linter (the copy has no virtualenv of its own)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)  # only the copy may be checked
    return subprocess.run(
        [str(tree / "scripts" / "lint-imports")],
        cwd=tree,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def add_import(tree: Path, module: str, line: str) -> None:
    path = tree / "incidentbot" / Path(*module.split(".")[1:]).with_suffix(".py")
    source = path.read_text()
    # After the module docstring and `from __future__`: an ordinary top-level import.
    head, sep, rest = source.partition("from __future__ import annotations\n")
    assert sep, f"{path} has no `from __future__` line to put the import after"
    path.write_text(f"{head}{sep}{line}  # noqa\n{rest}")


def top_level_modules() -> set[str]:
    """Every package and module directly under incidentbot/ (migrations/ is not a package)."""
    found = set()
    for path in (ROOT / "incidentbot").iterdir():
        if path.is_dir() and (path / "__init__.py").exists():
            found.add(path.name)
        elif path.suffix == ".py" and path.stem != "__init__":
            found.add(path.stem)
    return found


def test_every_package_is_placed_in_the_contracts() -> None:
    """A new package or module is checked from the start: it must be named as core or as a door
    or adapter, and given its layer. (Unlisted, import-linter would never look at it.)"""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["id"]: c for c in config["contracts"]}
    core = contracts["core-without-doors"]
    named = {m.removeprefix("incidentbot.") for m in core["source_modules"]}
    outer = {m.removeprefix("incidentbot.") for m in core["forbidden_modules"]}
    layered = {name.strip() for layer in contracts["layers"]["layers"] for name in layer.split(":")}
    modules = top_level_modules()
    assert modules - (named | outer) == set(), "name it in core-without-doors (source/forbidden)"
    assert modules - layered == set(), "give it its layer in the layers contract"
    assert named & outer == set()


def test_the_tree_as_it_is_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(tree_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    for name in (
        "The core never imports a door, an adapter, the sandbox or a vendor SDK",
        "The ledger knows a run's subject only as an opaque id",
        "Doors and adapters > use cases > domain > ports",
    ):
        assert f"{name} KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "named", "contract"),
    [
        (
            "incidentbot.scheduler.builtin",
            "from incidentbot.slack.handoff_commands import HandoffCommands",
            "incidentbot.scheduler.builtin -> incidentbot.slack.handoff_commands",
            "The core never imports a door",
        ),
        (
            "incidentbot.incidents.records",
            "import slack_sdk",
            "incidentbot.incidents.records -> slack_sdk",
            "The core never imports a door",
        ),
        (
            "incidentbot.usecases.core",
            "from incidentbot.pagerduty_adapter.client import PagerDutyPager",
            "incidentbot.usecases.core -> incidentbot.pagerduty_adapter.client",
            "The core never imports a door",
        ),
        (
            "incidentbot.ledger.service",
            "from incidentbot.incidents.models import Incident",
            "incidentbot.ledger.service -> incidentbot.incidents.models",
            "The ledger knows a run's subject only as an opaque id",
        ),
        (
            "incidentbot.incidents.service",
            "from incidentbot.usecases.core import Core",
            "incidentbot.incidents.service -> incidentbot.usecases.core",
            "Doors and adapters > use cases > domain > ports",
        ),
    ],
)
def test_a_forbidden_import_fails_the_lint_step_and_is_named(
    tmp_path: Path, module: str, line: str, named: str, contract: str
) -> None:
    tree = tree_copy(tmp_path)
    add_import(tree, module, line)
    result = lint_imports(tree)
    assert result.returncode != 0
    out = result.stdout
    assert "BROKEN" in out and contract in out
    assert named in out, out
    # The repository itself was not touched.
    assert (
        line
        not in (ROOT / "incidentbot" / Path(*module.split(".")[1:])).with_suffix(".py").read_text()
    )
