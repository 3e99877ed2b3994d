"""Faults of the consensus lab, for real: a frozen beacon node, validator clients stopped and
started, refusals. They run after every other test of the shared devnet
(``consensus_support.FILES``): stopping and starting validator client A costs its doppelgänger
wait (two or three epochs) before it signs again, which no later test has to wait out here.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
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


def test_a_frozen_beacon_node_stops_answering_until_thawed(consensus_lab: Lab) -> None:
    wait_for(lambda: head_slot(consensus_lab), "a first block", 120)
    out = _cli("lab", "fault", "beacon", "freeze", "--dir", str(consensus_lab.dir))
    assert out.returncode == 0, out.stderr
    assert "SIGSTOP" in out.stdout
    with pytest.raises(httpx.TimeoutException):
        httpx.get(beacon_url(consensus_lab) + "/eth/v1/node/health", timeout=2)
    beacon = consensus_lab.status().consensus
    assert beacon is not None and beacon.programs[0].frozen and beacon.health is None
    consensus_lab.fault("beacon", "unfreeze")
    before = wait_for(lambda: head_slot(consensus_lab), "the beacon API again", 60)
    wait_for(lambda: (head_slot(consensus_lab) or 0) > before, "new blocks", 120)


def test_validator_faults_and_refusals(consensus_lab: Lab) -> None:
    assert "stopped" in consensus_lab.fault("validator-a", "stop")
    assert consensus_lab.supervisor.state("validator-a").state == "STOPPED"
    assert "started" in consensus_lab.fault("validator-a", "start")
    with pytest.raises(LabError, match="validator-b takes the faults: stop, start, kill"):
        consensus_lab.fault("validator-b", "freeze")
    bad = _cli("lab", "fault", "validator-c", "stop", "--dir", str(consensus_lab.dir))
    assert bad.returncode == 1 and "no node 'validator-c'" in bad.stderr
