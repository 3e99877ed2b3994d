"""The validator actions without a chain: what they refuse before touching anything, what
their plans say, and how slashing-protection histories are compared (EIP-3076 files)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from incidentbot.config import Settings
from incidentbot.ledger.actions import PermanentError
from incidentbot.runbooks.actions import ActionContext, Services, registry
from incidentbot.runbooks.actions.web3._interchange import KeyMarks, covers, parse
from incidentbot.runbooks.config import RunbookSettings
from incidentbot.runbooks.egress import EgressPolicy, EgressRefused, EgressSettings

KEY_A = "0x" + "a" * 96
KEY_B = "0x" + "b" * 96
CLI = "/opt/lodestar/lib/index.js"
SOCK = "/run/lab/supervisor.sock"


def _ctx(allow_cli: bool = True) -> ActionContext:
    settings = Settings(runbooks=RunbookSettings(shell_allow=[CLI] if allow_cli else []))
    policy = EgressPolicy(EgressSettings(allow=["127.0.0.1"], sockets=[SOCK]))
    return ActionContext(run_id=1, step_id="s", services=Services(settings=settings, egress=policy))


def _plan(name: str, data: dict[str, Any], ctx: ActionContext | None = None) -> str:
    action = registry.get(name)
    assert action is not None
    return action.plan(action.validate(data), ctx or _ctx())


def _interchange(*entries: dict[str, Any], root: str = "0x" + "1" * 64) -> str:
    return json.dumps(
        {
            "metadata": {"interchange_format_version": "5", "genesis_validators_root": root},
            "data": list(entries),
        }
    )


CLIENT = {"socket": SOCK, "program": "validator-b", "beacon_url": "http://127.0.0.1:5052"}


def test_plans_say_what_would_be_done_and_touch_nothing(tmp_path: Path) -> None:
    assert _plan("validator.stop", {**CLIENT, "program": "validator-a", "indices": "6..7"}) == (
        f"stop validator-a through supervisord at {SOCK}, check its process is gone, then "
        "check on http://127.0.0.1:5052 that validators 6, 7 are not seen active in the 2 "
        "epochs after (up to 900s)"
    )
    assert _plan("validator.start", {**CLIENT, "indices": [6, 7], "confirm": True}) == (
        "refuse unless it runs with doppelgänger protection; refuse if validators 6, 7 are "
        f"active now on http://127.0.0.1:5052; start validator-b through supervisord at {SOCK}; "
        "wait up to 600s until its keys are active"
    )
    cli = {"lodestar": CLI, "data_dir": str(tmp_path / "b"), "file": str(tmp_path / "a.json")}
    assert _plan("validator.protection_verify", cli) == (
        f"export the slashing-protection history in {tmp_path / 'b'} and check it covers every "
        f"key of {tmp_path / 'a.json'} (highest block slot, source and target epochs)"
    )
    assert "for validators 6, 7 in epoch E-1" in _plan(
        "beacon.liveness", {"url": "http://127.0.0.1:5052", "indices": "6,7"}
    )
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_inputs_are_refused_with_a_reason() -> None:
    stop = registry.get("validator.stop")
    assert stop is not None
    for bad, reason in [
        ({"indices": []}, "at least one validator index"),
        ({"indices": "six"}, "invalid literal"),
        ({"indices": [-1]}, "not a validator index"),
        ({"program": "a; rm -rf /"}, "not a supervisord program name"),
        ({"socket": "http://host:9001"}, "unix socket"),
        ({"epochs": 0}, "greater than or equal to 1"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            stop.validate({**CLIENT, "indices": [6], **bad})
    export = registry.get("validator.protection_export")
    assert export is not None
    for bad, reason in [
        ({"data_dir": "relative/dir"}, "absolute path"),
        ({"file": "out.json"}, "absolute path"),
        ({"network": "dev --rm"}, "not a network"),
        ({"params": {"SECONDS_PER_SLOT": "2 --x"}}, "not a chain parameter"),
    ]:
        data = {"lodestar": CLI, "data_dir": "/d", "file": "/f.json", **bad}
        with pytest.raises(ValidationError, match=reason):
            export.validate(data)


def test_a_cli_not_allowed_or_a_refused_address_is_refused_at_plan_time() -> None:
    cli = {"lodestar": CLI, "data_dir": "/d", "file": "/f.json"}
    with pytest.raises(PermanentError, match=r"add it to runbooks\.shell_allow"):
        _plan("validator.protection_export", cli, _ctx(allow_cli=False))
    with pytest.raises(EgressRefused):
        _plan("validator.protection_import", {**cli, "beacon_url": "http://10.1.2.3:5052"})
    with pytest.raises(EgressRefused, match="unix socket"):
        _plan("validator.stop", {**CLIENT, "socket": "/elsewhere.sock", "indices": [6]})


def test_histories_are_compared_by_their_high_water_marks() -> None:
    source = parse(
        _interchange(
            {
                "pubkey": KEY_A,
                "signed_blocks": [{"slot": "81"}, {"slot": "97"}],
                "signed_attestations": [
                    {"source_epoch": "9", "target_epoch": "10"},
                    {"source_epoch": "10", "target_epoch": "11"},
                ],
            },
            {"pubkey": KEY_B.upper().replace("0X", "0x"), "signed_attestations": []},
            {"pubkey": "0x47454e455349535f54494d45", "signed_blocks": []},  # metadata, not a key
        ),
        "a.json",
    )
    assert source.dropped == 1 and set(source.keys) == {KEY_A, KEY_B}
    a = source.keys[KEY_A]
    assert (a.block_slot, a.source_epoch, a.target_epoch) == (97, 10, 11)
    assert covers(KeyMarks(KEY_A, 97, 10, 11), a) == []
    assert covers(KeyMarks(KEY_A, 120, 12, 13), a) == []
    assert covers(KeyMarks(KEY_A, 96, 10, 10), a) == [
        "block slot 96 < 97",
        "attestation target epoch 10 < 11",
    ]
    assert covers(None, a) == ["no history at all"]
    # A key that signed nothing is covered by anything, even no attestations.
    assert covers(KeyMarks(KEY_B, None, None, None), source.keys[KEY_B]) == []


def test_a_file_that_is_not_an_interchange_is_refused() -> None:
    for text in ["{", json.dumps({"data": []}), json.dumps({"metadata": {}, "data": {}})]:
        with pytest.raises(PermanentError, match="is not an EIP-3076 interchange file"):
            parse(text, "x.json")


def test_verify_refuses_a_source_export_without_the_key_set(tmp_path: Path) -> None:
    """An export with no key, or without a key of the key set, proves nothing about the
    source's history: verify refuses it before running the CLI (the CLI here does not exist)."""
    action = registry.get("validator.protection_verify")
    assert action is not None
    empty, one = tmp_path / "empty.json", tmp_path / "one.json"
    empty.write_text(_interchange())
    one.write_text(_interchange({"pubkey": KEY_A, "signed_blocks": [], "signed_attestations": []}))
    base = {"lodestar": CLI, "data_dir": str(tmp_path / "b")}
    with pytest.raises(PermanentError, match="holds no key: the source's history is missing"):
        action.run(action.validate({**base, "file": str(empty)}), _ctx())

    class Beacon(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ids = parse_qs(urlsplit(self.path).query).get("id", [])
            keys = {"6": KEY_A, "7": KEY_B}
            data = [{"index": i, "validator": {"pubkey": keys[i]}} for i in ids if i in keys]
            body = json.dumps({"data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Beacon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        keyed = {**base, "file": str(one), "beacon_url": url}
        with pytest.raises(PermanentError, match="lacks the history of validator 7 of the key"):
            action.run(action.validate({**keyed, "indices": [6, 7]}), _ctx())
        with pytest.raises(PermanentError, match="the beacon node knows no validator 9"):
            action.run(action.validate({**keyed, "indices": [6, 9]}), _ctx())
    finally:
        server.shutdown()
    assert not (tmp_path / "b").exists()  # nothing was exported
    with pytest.raises(ValidationError, match="indices needs beacon_url"):
        action.validate({**base, "file": str(one), "indices": [6]})
