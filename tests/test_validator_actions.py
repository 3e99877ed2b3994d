"""The validator actions against the consensus lab (real Lodestar): beacon reads and the
refusals of a guarded start, stop and export. The actions doing a whole move of keys 6 and 7
from validator client A to B (a proven stop, slashing-protection export, import and verify, a
confirmed start) run in move-validator-keys, on the same devnet, in test_lab_validator_keys.py.

One devnet serves the consensus test files (``consensus_support``): every wait is on a
condition with a generous timeout (an epoch is 16 s), never on the clock.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from incidentbot.config import Settings
from incidentbot.ledger.actions import PermanentError, RetryableError
from incidentbot.runbooks.actions import ActionContext, Services, registry
from incidentbot.runbooks.config import RunbookSettings
from incidentbot.runbooks.egress import EgressRefused
from incidentbot.sandbox.lab import Lab
from tests.consensus_support import (  # noqa: F401 - a fixture
    egress,
    head_slot,
    healthy_consensus,
    needs_consensus,
    slashings,
)
from tests.egress_support import LOCAL_POLICY
from tests.lab_support import wait_for

pytestmark = needs_consensus
KEYS = [6, 7]


def _ctx(lab: Lab, tmp_path: Path) -> ActionContext:
    cl = lab.runbook_vars()["consensus"]
    settings = Settings(
        data_dir=tmp_path / "data", runbooks=RunbookSettings(shell_allow=[cl["lodestar"][1]])
    )
    return ActionContext(
        run_id=7, step_id="step", services=Services(settings=settings, egress=egress(lab))
    )


def _run(name: str, data: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    action = registry.get(name)
    assert action is not None
    inputs = action.validate(data)
    assert action.plan(inputs, ctx)  # plans first, as a run does
    return action.run(inputs, ctx)


def _cl(lab: Lab) -> dict[str, Any]:
    return lab.runbook_vars()["consensus"]


def _cli(lab: Lab, program: str) -> dict[str, Any]:
    cl = _cl(lab)  # `lab vars` gives the CLI inputs for this devnet
    return {**cl["cli"], "data_dir": cl["validators"][program]["data_dir"]}


def _client(lab: Lab, program: str) -> dict[str, Any]:
    cl = _cl(lab)
    return {
        "socket": cl["supervisor"],
        "program": program,
        "beacon_url": cl["beacon"],
        "indices": KEYS,
    }


def _wait_live(lab: Lab, ctx: ActionContext) -> dict[str, Any]:
    """Until A's keys (past doppelgänger protection) are seen active in an epoch."""

    def check() -> dict[str, Any] | None:
        try:
            out = _run("beacon.liveness", {"url": _cl(lab)["beacon"], "indices": KEYS}, ctx)
        except RetryableError:  # the ledger would try again: so does the test
            return None
        return out if out["all_live"] else None

    return wait_for(check, "A's keys to be live", 240)


@pytest.fixture(scope="module")
def chain(consensus_lab: Lab) -> Lab:
    """The devnet with its first blocks, and A's keys signing."""
    wait_for(lambda: (head_slot(consensus_lab) or 0) > 0, "a first block", 120)
    return consensus_lab


def test_beacon_reads(chain: Lab, tmp_path: Path) -> None:
    ctx, url = _ctx(chain, tmp_path), _cl(chain)["beacon"]
    head = _run("beacon.head", {"url": url}, ctx)
    assert head["head_slot"] > 0 and head["lag_slots"] >= 0
    assert head["epoch"] == head["clock_slot"] // 8
    assert head["finalized_epoch"] <= head["justified_epoch"] <= head["epoch"]
    # A's keys are seen attesting.
    live = _wait_live(chain, ctx)
    # Lodestar 1.5 answers the GET form (the standard POST is a 404 there).
    assert live["endpoint"] == "/eth/v1/validator/liveness" and live["live"] == KEYS
    duties = _run("beacon.duties", {"url": url, "indices": "6..7"}, ctx)
    assert sorted(d["index"] for d in duties["attester"]) == KEYS
    perf = _run("beacon.performance", {"url": url, "indices": "0..7"}, ctx)
    assert perf["epoch"] >= live["epoch"]
    assert set(perf["attested"]) | set(perf["missed_attestations"]) == set(range(8))
    assert all(p["index"] in range(8) for p in perf["proposed"])
    # A node that does not answer: retryable (nothing happened); a URL the policy refuses:
    # refused before anything is sent.
    with pytest.raises(RetryableError, match="Connection refused"):
        _run("beacon.head", {"url": "http://127.0.0.1:9", "timeout": 2}, ctx)
    with pytest.raises(EgressRefused):
        _run("beacon.head", {"url": "http://169.254.169.254"}, ctx)


def test_the_standard_liveness_endpoint_is_used_where_the_node_has_it(tmp_path: Path) -> None:
    """A node that answers POST /eth/v1/validator/liveness/{epoch} is asked that way."""
    seen: list[tuple[str, str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            seen.append(("GET", self.path, None))
            if self.path.startswith("/eth/v1/beacon/genesis"):
                self._answer({"data": {"genesis_time": "0"}})
            else:
                self._answer({"data": {"SECONDS_PER_SLOT": "12", "SLOTS_PER_EPOCH": "32"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(("POST", self.path, body))
            self._answer({"data": [{"index": i, "is_live": i == "6"} for i in body]})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        ctx = ActionContext(run_id=1, step_id="s", services=Services(egress=LOCAL_POLICY))
        out = _run("beacon.liveness", {"url": url, "indices": [6, 7], "epoch": 5}, ctx)
    finally:
        server.shutdown()
    assert out["live"] == [6] and out["not_live"] == [7] and not out["all_live"]
    assert out["endpoint"] == "/eth/v1/validator/liveness/{epoch}"
    assert ("POST", "/eth/v1/validator/liveness/5", ["6", "7"]) in seen


def test_starting_a_second_client_while_the_keys_sign_is_refused(
    chain: Lab, tmp_path: Path
) -> None:
    """B is not started while A signs with the keys; a client without doppelgänger
    protection is not started at all; A cannot be proven stopped while it runs elsewhere."""
    ctx = _ctx(chain, tmp_path)
    _wait_live(chain, ctx)
    with pytest.raises(PermanentError, match="another client signs with them; not starting"):
        _run("validator.start", _client(chain, "validator-b"), ctx)
    assert chain.supervisor.state("validator-b").state == "STOPPED"
    # The beacon program's command line has no doppelgänger protection.
    with pytest.raises(PermanentError, match="does not run with doppelgänger protection"):
        _run("validator.start", {**_client(chain, "beacon"), "refuse_if_live": False}, ctx)
    # "Stopping" B (already stopped) cannot prove the keys quiet: A signs with them. Two
    # epochs, so that one epoch A misses on a busy machine does not pass for quiet keys.
    _wait_live(chain, ctx)
    with pytest.raises(PermanentError, match="another client signs with these keys"):
        _run("validator.stop", {**_client(chain, "validator-b"), "epochs": 2}, ctx)
    # A's database cannot be exported while A runs.
    out = tmp_path / "a.json"
    with pytest.raises(PermanentError, match="validator-a is RUNNING"):
        _run(
            "validator.protection_export",
            {
                **_cli(chain, "validator-a"),
                "file": str(out),
                "socket": _cl(chain)["supervisor"],
                "program": "validator-a",
            },
            ctx,
        )
    assert not out.exists()


def test_doppelganger_protection_stops_a_second_client(chain: Lab, tmp_path: Path) -> None:
    """Told to skip the liveness check, B starts while A signs: its doppelgänger protection
    sees the keys live and it exits without signing; the step fails saying so."""
    ctx = _ctx(chain, tmp_path)
    with pytest.raises(PermanentError, match="doppelgänger protection may have found them"):
        _run(
            "validator.start",
            {**_client(chain, "validator-b"), "refuse_if_live": False, "confirm": True},
            ctx,
        )
    assert chain.supervisor.state("validator-b").state in ("EXITED", "FATAL", "BACKOFF")
    assert slashings(chain) == ([], [])
