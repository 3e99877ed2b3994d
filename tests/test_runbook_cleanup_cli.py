"""Clean-up steps as a runbook author and an operator see them: ``runbook validate``, ``show``
and ``plan`` on a file with ``always: true``, and ``runs show`` and ``runs cancel`` on a run
with clean-up steps ahead (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

from incidentbot import db, ledger
from tests.test_ledger_cli import rows

RUNBOOK = """
name: drain-and-back
description: Drain a node and put it back
params:
  node: {type: string, pattern: "^[a-z0-9-]+$"}
target: node
steps:
  - id: drain
    name: Drain it
    uses: incident.note
    with: {text: "drain {{ params.node }}"}
  - id: undrain
    name: Put it back
    uses: incident.note
    always: true
    when: "steps.drain.status == 'succeeded'"
    with: {text: "ready {{ params.node }}"}
"""


def write_runbook(directory: Path) -> None:
    (directory / "runbooks").mkdir()
    (directory / "runbooks" / "drain.yaml").write_text(dedent(RUNBOOK).lstrip(), "utf-8")


def test_validate_show_and_plan_mark_the_clean_up_step(cli, tmp_path: Path):
    write_runbook(tmp_path)
    code, out, err = cli("runbook", "validate")
    assert (code, err) == (0, "") and "1 runbook OK" in out
    code, out, _ = cli("runbook", "show", "drain-and-back")
    assert code == 0
    lines = out.splitlines()
    at = lines.index("  2. undrain — Put it back")
    assert lines[at + 2].strip() == (
        "always:     yes (clean-up: runs even if the run fails or is cancelled)"
    )
    assert not any("always" in line for line in lines[:at])
    code, out, _ = cli("runbook", "plan", "drain-and-back", "node=node-2")
    assert code == 0
    steps = [line for line in out.splitlines() if line.lstrip()[:2] in ("1.", "2.")]
    assert len(steps) == 2, out
    assert "clean-up" not in steps[0]
    assert steps[1].endswith(
        "[if its condition holds] [clean-up: runs even if the run fails, times out or is cancelled]"
    ), steps[1]


def test_runs_show_marks_clean_up_steps_and_cancel_says_they_run(cli, engine):
    with db.transaction(engine) as s:
        rid = ledger.start_run(
            s, kind="test", key="k", target="node-2", actor="alice",
            steps=[{"name": "Drain it", "action": "ledger.noop"},
                   {"name": "Put it back", "action": "ledger.noop", "always": True}],
        ).id  # fmt: skip
    code, out, _ = cli("runs", "show", str(rid))
    assert code == 0
    names = [row[1] for row in rows(out) if row and row[0] in ("1", "2")]
    assert names == ["Drain it", "Put it back (clean-up)"]
    code, out, _ = cli("runs", "cancel", str(rid), "--as", "cli:alice")
    assert code == 0
    assert out.strip() == (
        f"run {rid}: cancelled by cli:alice; running its clean-up steps first (Put it back), "
        "then it ends cancelled"
    )
    worker = ledger.Worker(engine, name="cli-test", lease=5)
    while worker.run_once():
        pass
    code, out, _ = cli("runs", "show", str(rid))
    assert f"Run {rid} test: cancelled" in out
    assert "Error:      cancelled by cli:alice; ran the clean-up steps: Put it back" in out
    assert [row[3] for row in rows(out) if row and row[0] in ("1", "2")] == [
        "skipped",
        "succeeded",
    ]
