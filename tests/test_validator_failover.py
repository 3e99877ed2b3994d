"""Failing a key set over from a dead host, without a chain: what ``validator.prove_gone``
concludes from the beacon node's liveness (and refuses), what ``validator.protection_check``
asks of the history file, and the interlock on failover-validator. The beacon node is an HTTP
server in the test; the chain's clock moves one epoch each time the action waits. The run on
the real devnet, killed at every step, is in test_lab_validator_keys.py."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from incidentbot.ledger.actions import NeedsAttentionError
from incidentbot.ledger.redact import redact_strings
from incidentbot.runbooks.actions import ActionContext, Services, registry
from incidentbot.runbooks.actions.web3._beacon import Clock
from incidentbot.runbooks.definition import Runbook
from incidentbot.runbooks.keyguard import check_runbook
from incidentbot.runbooks.loader import load_dirs
from tests.egress_support import LOCAL_POLICY

REPO = Path(__file__).resolve().parent.parent
ROOT = "0x" + "1" * 64
KEYS = {6: "0x" + "a" * 96, 7: "0x" + "b" * 96}


@dataclass
class Chain:
    epoch: int = 10
    live: dict[int, set[int]] = field(default_factory=dict)  # epoch -> indices active
    asked: list[str] = field(default_factory=list)
    # slot -> (proposer, [(attestation slot, committee index, target epoch, bits)])
    blocks: dict[int, tuple[int, list[tuple[int, int, int, str]]]] = field(default_factory=dict)
    committees: dict[tuple[int, int], list[int]] = field(default_factory=dict)


class Ticking(ActionContext):
    """A step whose every wait lets the chain move on one epoch."""

    chain: Chain

    def wait(self, seconds: float) -> bool:
        self.chain.epoch += 1
        return False


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Chain, str]]:
    state = Chain()
    monkeypatch.setattr(Clock, "epoch", lambda self, now=None: state.epoch)

    class Beacon(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            state.asked.append(url.path)
            if url.path == "/eth/v1/beacon/genesis":
                data: Any = {"genesis_time": "0", "genesis_validators_root": ROOT}
            elif url.path == "/eth/v1/config/spec":
                data = {"SECONDS_PER_SLOT": "2", "SLOTS_PER_EPOCH": "8"}
            elif url.path == "/eth/v1/validator/liveness":
                epoch = int(query["epoch"][0])
                if epoch not in (state.epoch - 1, state.epoch):
                    return self._send(400, {"message": "epoch out of range"})
                active = state.live.get(epoch, set())
                data = [{"index": i, "is_live": int(i) in active} for i in query["indices"]]
            elif url.path == "/eth/v1/beacon/headers/head":
                data = {"header": {"message": {"slot": str(state.epoch * 8)}}}
            elif url.path.startswith("/eth/v2/beacon/blocks/"):
                slot = int(url.path.rsplit("/", 1)[1])
                if slot not in state.blocks:
                    return self._send(404, {"message": "no block"})
                proposer, atts = state.blocks[slot]
                data = {"message": {"slot": str(slot), "proposer_index": str(proposer), "body": {
                    "attestations": [{"aggregation_bits": b, "data": {
                        "slot": str(s), "index": str(i), "target": {"epoch": str(t)}}}
                        for s, i, t, b in atts]}}}  # fmt: skip
            elif url.path.endswith("/committees"):
                epoch = int(query["epoch"][0])
                data = [{"slot": str(s), "index": str(i), "validators": [str(v) for v in vs]}
                        for (s, i), vs in state.committees.items() if s // 8 == epoch]  # fmt: skip
            elif url.path == "/eth/v1/beacon/states/head/validators":
                data = [
                    {"index": i, "validator": {"pubkey": KEYS[int(i)]}}
                    for i in query.get("id", [])
                    if int(i) in KEYS
                ]
            else:
                return self._send(404, {"message": "no such path"})
            self._send(200, {"data": data})

        def do_POST(self) -> None:
            self._send(404, {"message": "not here"})  # Lodestar 1.5: the GET liveness only

        def _send(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Beacon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(name: str, data: dict[str, Any], chain: Chain) -> dict[str, Any]:
    action = registry.get(name)
    assert action is not None
    ctx = Ticking(run_id=1, step_id="s", services=Services(egress=LOCAL_POLICY))
    ctx.chain = chain
    inputs = action.validate(data)
    assert action.plan(inputs, ctx)
    return action.run(inputs, ctx)


def gone(url: str, **extra: Any) -> dict[str, Any]:
    dead = f"http://127.0.0.1:{closed_port()}"
    return {"client": "validator-a", "beacon_url": url, "indices": [6, 7], "api_url": dead,
            "epochs": 2, **extra}  # fmt: skip


def test_a_host_that_died_a_moment_ago_is_proven_gone_with_the_epochs_each_key_signed_last(
    chain: tuple[Chain, str],
) -> None:
    state, url = chain
    # Both keys signed in epoch 9, only 6 in epoch 10 (the host died during it), then quiet.
    state.live = {9: {6, 7}, 10: {6}}
    # The blocks say the same (key 6 first in its committee, key 7 second), and 7 proposed at
    # slot 77; they hold attestations of other validators too.
    state.committees = {(80, 0): [6, 3], (74, 0): [1, 7], (66, 0): [7, 6]}
    state.blocks = {
        81: (3, [(80, 0, 10, "0x05")]),  # bits 1,0 + delimiter: validator 6
        77: (7, []),
        75: (1, [(74, 0, 9, "0x06")]),  # bits 0,1 + delimiter: validator 7
        67: (2, [(66, 0, 8, "0x07")]),  # before what the scan needs to read
    }
    out = run("validator.prove_gone", gone(url), state)
    assert out["api"] == "ConnectError"
    assert (out["live_epochs"], out["epochs_checked"]) == ([9, 10], [11, 12])
    assert out["cover_epochs"] == {6: 10, 7: 9} and out["cover_epoch"] == 10
    assert out["cover_seen"] == [6, 7] and out["cover_unknown"] == []
    assert out["cover_slots"] == {7: 77}
    # The scan stopped once no later signature could come: below epoch 9's first slot.
    assert out["scanned_slots"] == [72, 104] and "/eth/v2/beacon/blocks/67" not in state.asked
    described = registry.get("validator.prove_gone").describe(out)  # type: ignore[union-attr]
    assert described == (
        "validator-a is gone: its keys not live for 2 epochs (11 and 12); its keys may have "
        "signed up to epoch 10"
    )
    # A host that died long ago: its keys quiet from the start of the watch. The blocks say
    # when they last attested; a key without any in the blocks read gets the epoch before the
    # first block read as its bound.
    state.epoch, state.live = 20, {}
    state.committees[(120, 1)] = [6]
    state.blocks[121] = (0, [(120, 1, 15, "0x03")])
    out = run("validator.prove_gone", gone(url, lookback_epochs=8), state)
    assert out["cover_epochs"] == {6: 15, 7: 12} and out["cover_unknown"] == [7]
    assert out["cover_seen"] == [] and out["scanned_slots"] == [104, 168]


def test_keys_still_signing_or_signing_again_stop_the_run_for_a_person(
    chain: tuple[Chain, str],
) -> None:
    state, url = chain
    state.live = {9: {7}, 10: set(), 11: {7}}
    with pytest.raises(NeedsAttentionError, match=r"validators 7 were active in epoch 11 \(after "
                       r"quiet epochs 10\): validator-a may not be gone"):  # fmt: skip
        run("validator.prove_gone", gone(url, epochs=3), state)
    state.epoch, state.live = 10, {e: {6} for e in range(9, 30)}
    with pytest.raises(NeedsAttentionError, match="validators 6 were active in epoch 11"):
        run("validator.prove_gone", gone(url, max_live_epochs=2), state)


def test_a_source_whose_api_answers_is_not_gone_and_the_chain_is_not_asked(
    chain: tuple[Chain, str],
) -> None:
    state, url = chain
    with pytest.raises(NeedsAttentionError, match=r"answers \(HTTP 404\): its host is not gone"):
        run("validator.prove_gone", gone(url, api_url=url + "/keymanager"), state)
    assert state.asked == ["/keymanager"]


def history(path: Path, targets: dict[int, int | None], root: str = ROOT, slot: int = 40) -> Path:
    data = [
        {
            "pubkey": KEYS[i],
            "signed_blocks": [{"slot": str(slot)}],
            "signed_attestations": []
            if target is None
            else [{"source_epoch": str(target - 1), "target_epoch": str(target)}],
        }
        for i, target in targets.items()
    ]
    meta = {"interchange_format_version": "5", "genesis_validators_root": root}
    path.write_text(json.dumps({"metadata": meta, "data": data}))
    return path


def test_the_history_must_reach_the_last_epoch_each_key_may_have_signed_in(
    chain: tuple[Chain, str], tmp_path: Path
) -> None:
    state, url = chain
    check = {"beacon_url": url, "indices": [6, 7], "cover_epochs": {"6": 10, "7": 9},
             "cover_epoch": 10, "cover_slots": {"6": 40}}  # fmt: skip
    good = history(tmp_path / "fresh.json", {6: 10, 7: 9})
    out = run("validator.protection_check", {**check, "file": str(good)}, state)
    assert out["sha256"] == "sha256:" + hashlib.sha256(good.read_bytes()).hexdigest()
    # Stored outputs are masked: a bare 64-hex digest would read as a private key and be lost
    # to the import that checks it.
    assert redact_strings({"sha256": out["sha256"]}) == {"sha256": out["sha256"]}
    assert [(r["index"], r["max_target_epoch"], r["needed_epoch"]) for r in out["reached"]] == [
        (6, 10, 10),
        (7, 9, 9),
    ]
    for file, why in [
        (history(tmp_path / "old.json", {6: 10, 7: 8}), "validator 7: attestations up to epoch 8"),
        (history(tmp_path / "one.json", {6: 12}), "validator 7: no history at all"),
        (
            history(tmp_path / "block.json", {6: 12, 7: 12}, slot=39),
            "validator 6: blocks up to slot 39, not 40",
        ),
        (
            history(tmp_path / "none.json", {6: 12, 7: None}),
            "validator 7: attestations up to epoch none",
        ),
        (history(tmp_path / "other.json", {6: 12, 7: 12}, "0x" + "2" * 64), "another chain"),
        (tmp_path / "missing.json", "cannot read"),
    ]:
        with pytest.raises(NeedsAttentionError, match=why):
            run("validator.protection_check", {**check, "file": str(file)}, state)
    with pytest.raises(NeedsAttentionError, match="nothing is filled in automatically"):
        run("validator.protection_check", {**check, "file": str(tmp_path / "old.json")}, state)


def test_failover_validator_cannot_start_the_target_without_the_proof_the_source_is_gone() -> None:
    book = load_dirs([REPO / "runbooks"], registry).get("failover-validator")
    assert book is not None
    assert check_runbook(book, registry) == []
    data = book.model_dump(mode="json", by_alias=True)
    data["steps"] = [st for st in data["steps"] if st["id"] != "prove_gone"]
    data["steps"][0]["with"]["cover_epochs"] = {}
    data["steps"][0]["with"]["cover_epoch"] = 0
    data["steps"][1]["with"]["sha256"] = None
    problems = check_runbook(Runbook.model_validate(data), registry)
    assert [why for _, why in problems] == [
        "step start_target starts signing with key set {{ vars.key_sets[params.key_set].indices "
        "}} at {{ vars.consensus.validators[params.target].program }}, but no earlier step proves "
        "the source client stopped: a step that proves it stopped (e.g. validator.stop) must come "
        "first"
    ]
