"""The consensus lab for tests: one lab with a Lodestar devnet for all the test files that
use it (``FILES``), put back after each test (beacon node running and not frozen, validator
client A running, B stopped).

``needs_consensus`` skips a test when Lodestar is not installed (outside CI; CI must have
it: ``npm ci`` in lab/consensus, which scripts/test runs). A devnet answers after about ten
seconds and finalises its first epochs about a minute and a half later (2 s slots), so the
tests share one and wait on conditions, never on the clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from incidentbot.runbooks.egress import EgressPolicy, EgressSettings
from incidentbot.sandbox.lab import Lab, consensus, missing
from tests.lab_support import wait_for

MISSING = missing() + consensus.missing()
needs_consensus = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"),
    reason="consensus lab not installed: " + "; ".join(MISSING),
)
# Generous: CI machines are busy, and an epoch is 16 s.
EPOCH_WAIT = 240.0


# The test files that use the devnet, in the order they run: tests/conftest.py keeps them next
# to each other, and has pytest-xdist (`--dist loadfile`, scripts/test) send them to one
# process as if they were one file, so one devnet serves them all. The file that moves the keys
# (to B and back to A, B's host "dead") ends with A signing, as the devnet began; the faults
# (A stopped and started, the beacon node frozen) come last, so that no test waits out A's
# doppelgänger window after them.
FILES = (
    "test_lab_consensus.py",
    "test_validator_actions.py",
    "test_lab_validator_keys.py",
    "test_lab_consensus_faults.py",
)
SCOPE = "consensus-lab"
_running: list[Lab] = []


@pytest.fixture(scope="session")
def consensus_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One devnet for the session's consensus tests (a file using it is listed in
    ``FILES``): tests/conftest.py brings it down right after the last of them instead of at
    the end of the session."""
    if MISSING:
        pytest.fail("CI needs the consensus lab: " + "; ".join(MISSING))
    running = Lab(tmp_path_factory.mktemp("cl"))
    running.up(with_consensus=True, timeout=300)
    _running.append(running)
    yield running
    bring_down()


def bring_down() -> None:
    """Stop the devnet if one runs (``lab down`` from another process, which finds the
    Lodestar programs and stops them; the beacon node is SIGKILLed by supervisord if it
    lingers), and check nothing of it is left."""
    if not _running:
        return
    running = _running.pop()
    down = subprocess.run(
        [sys.executable, "-m", "incidentbot.cli", "lab", "down", "--dir", str(running.dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if down.returncode != 0:
        running.down()
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("lodestar") == 2  # the beacon node and A
    assert running.processes() == []


@pytest.fixture(autouse=True)
def healthy_consensus(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the consensus lab: the beacon node running and not frozen,
    validator client A running, B stopped."""
    yield
    if "consensus_lab" not in request.fixturenames:
        return
    running: Lab = request.getfixturevalue("consensus_lab")
    sup = running.supervisor
    beacon = sup.state(consensus.BEACON)
    if beacon.pid:
        os.kill(beacon.pid, signal.SIGCONT)
    sup.stop(consensus.VALIDATOR_B)
    if not sup.state(consensus.VALIDATOR_A).running:
        sup.start(consensus.VALIDATOR_A)
    wait_for(lambda: beacon_data(running, "/eth/v1/node/syncing"), "the beacon API", 60)


def beacon_url(lab: Lab) -> str:
    cl = lab.config.consensus
    assert cl is not None
    return cl.beacon_url


def beacon_data(lab: Lab, path: str, **params: Any) -> Any:
    """The ``data`` of a Beacon API GET, or None when the node does not answer."""
    try:
        response = httpx.get(beacon_url(lab) + path, params=params or None, timeout=2)
    except httpx.HTTPError:
        return None
    return response.json().get("data") if response.status_code == 200 else None


def head_slot(lab: Lab) -> int | None:
    data = beacon_data(lab, "/eth/v1/beacon/headers/head")
    return int(data["header"]["message"]["slot"]) if data else None


def slashings(lab: Lab) -> tuple[list[Any], list[Any]]:
    """The beacon node's attester and proposer slashing pools."""
    attester = beacon_data(lab, "/eth/v1/beacon/pool/attester_slashings")
    proposer = beacon_data(lab, "/eth/v1/beacon/pool/proposer_slashings")
    return attester, proposer


def egress(lab: Lab) -> EgressPolicy:
    """Loopback and the lab's supervisord socket."""
    return EgressPolicy(
        EgressSettings(allow=["127.0.0.1"], sockets=[str(lab.paths.supervisor_sock)])
    )
