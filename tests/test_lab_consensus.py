"""The consensus lab, for real: a Lodestar dev beacon node and validator clients A and B
under the lab's supervisord, next to the anvil nodes (docs/lab.md).

One devnet serves these tests and the other consensus test files (``consensus_support``);
each test leaves it with the beacon node running, A running and B stopped. Without Lodestar
installed the module is skipped with the reason, except in CI, where it fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from incidentbot.sandbox.lab import Lab, LabError
from tests.consensus_support import (  # noqa: F401 - a fixture
    beacon_url,
    head_slot,
    healthy_consensus,
    needs_consensus,
)
from tests.lab_support import wait_for

pytestmark = needs_consensus
CLI = [sys.executable, "-m", "incidentbot.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def test_status_from_another_process_shows_the_devnet(consensus_lab: Lab) -> None:
    """`lab status --json` in another process finds the beacon node, A running and B
    stopped; the chain produces blocks (the head moves on)."""
    first = wait_for(lambda: head_slot(consensus_lab), "a first block", 120)
    wait_for(lambda: (head_slot(consensus_lab) or 0) > first, "the head to move on", 120)
    out = _cli("lab", "status", "--json", "--dir", str(consensus_lab.dir))
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)["consensus"]
    programs = {p["name"]: p for p in status["programs"]}
    assert programs["beacon"]["state"] == "RUNNING"
    assert programs["validator-a"]["state"] == "RUNNING"
    assert programs["validator-b"]["state"] == "STOPPED"
    assert status["health"] == 200 and status["head_slot"] >= first
    lodestar = {p.pid for p in consensus_lab.processes() if p.kind == "lodestar"}
    assert lodestar == {programs["beacon"]["pid"], programs["validator-a"]["pid"]}
    # The table form says the same.
    table = _cli("lab", "status", "--dir", str(consensus_lab.dir)).stdout
    assert "validator-b" in table and "STOPPED" in table and "beacon API" in table
    # `lab vars` points the validator actions at it.
    settings = consensus_lab.runbook_settings()
    cl = settings["vars"]["consensus"]
    assert cl["beacon"] == beacon_url(consensus_lab)
    assert cl["validators"]["validator-b"]["indices"] == [6, 7]
    assert settings["shell_allow"] == [cl["lodestar"][1]] == [cl["cli"]["lodestar"]]
    assert cl["cli"]["params"] == {"SECONDS_PER_SLOT": "2"}
    # ... and move-validator-keys at the key set both clients are configured for.
    assert settings["vars"]["key_sets"] == {"lab": {"indices": [6, 7]}}
    assert settings["vars"]["protection_dir"] == str(consensus_lab.dir / "protection")


def test_the_execution_lab_alone_refuses_consensus_faults(tmp_path: Path) -> None:
    """A lab started without --consensus says so (nothing is started for this check)."""
    lab = Lab(tmp_path)
    lab.paths.state_file.write_text(
        json.dumps(
            {
                "ports": {"node-1": 1, "node-2": 2, "node-3": 3, "frontend": 4},
                "anvil": "a",
                "haproxy": "h",
            }
        )
    )
    with pytest.raises(LabError, match=r"without .*--consensus"):
        lab.fault("beacon", "freeze")
    assert "consensus" not in lab.runbook_vars()
    assert "shell_allow" not in lab.runbook_settings()
