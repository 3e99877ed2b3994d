"""The keymanager API actions against a local server that speaks the standard
(``/eth/v1/keystores``, bearer token): listing keys, deleting a key set with its history
written to a file, the token never shown, and refusals that say why. The lab's Lodestar
clients answer the same API (test_lab_validator_keys.py lists B's keys before its host dies)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from incidentbot.ledger.actions import PermanentError
from incidentbot.runbooks.actions import ActionContext, Services, registry
from incidentbot.runbooks.egress import EgressRefused
from tests.egress_support import LOCAL_POLICY

TOKEN = "api-token-0x" + "5e" * 32
ROOT = "0x" + "1" * 64
KEYS = {6: "0x" + "a" * 96, 7: "0x" + "b" * 96}


class Keymanager:
    def __init__(self) -> None:
        self.signing = set(KEYS.values())
        self.requests: list[tuple[str, str, Any]] = []


@pytest.fixture
def server() -> Iterator[tuple[Keymanager, str]]:
    km = Keymanager()

    class Handler(BaseHTTPRequestHandler):
        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else None

        def _send(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/eth/v1/beacon/states/head/validators":
                ids = parse_qs(url.query).get("id", [])
                rows = [{"index": i, "validator": {"pubkey": KEYS[int(i)]}} for i in ids
                        if int(i) in KEYS]  # fmt: skip
                return self._send(200, {"data": rows})
            if not self._authorized():
                return None
            km.requests.append(("GET", url.path, None))
            rows = [{"validating_pubkey": k, "derivation_path": "", "readonly": False}
                    for k in sorted(km.signing)]  # fmt: skip
            self._send(200, {"data": rows})

        def do_DELETE(self) -> None:
            if not self._authorized():
                return None
            body = self._body()
            km.requests.append(("DELETE", self.path, body))
            statuses, history = [], []
            for key in body["pubkeys"]:
                status = "deleted" if key in km.signing else "not_active"
                km.signing.discard(key)
                statuses.append({"status": status})
                history.append({"pubkey": key, "signed_blocks": [{"slot": "81"}],
                                "signed_attestations": [{"source_epoch": "9",
                                                         "target_epoch": "10"}]})  # fmt: skip
            meta = {"interchange_format_version": "5", "genesis_validators_root": ROOT}
            interchange = {"metadata": meta, "data": history}
            self._send(200, {"data": statuses, "slashing_protection": json.dumps(interchange)})

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, {"message": f"bad token, expected {TOKEN}"})
                return False
            return True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield km, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def ctx() -> ActionContext:
    return ActionContext(run_id=1, step_id="s", services=Services(egress=LOCAL_POLICY))


def act(name: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    action = registry.get(name)
    assert action is not None
    inputs = action.validate(data)
    return action.plan(inputs, ctx()), action.run(inputs, ctx())


def test_delete_stops_the_keys_and_keeps_their_history_and_a_second_delete_returns_it_again(
    server: tuple[Keymanager, str], tmp_path: Path
) -> None:
    km, url = server
    token = tmp_path / "api-token.txt"
    token.write_text(TOKEN + "\n")
    base = {"url": url, "token_file": str(token)}
    plan, listed = act("validator.keys_list", base)
    assert plan == f"list the keys at {url}/eth/v1/keystores (token from {token})"
    assert listed["keys"] == 2 and listed["pubkeys"] == ["0xaaaaaaaa…aaaaaa", "0xbbbbbbbb…bbbbbb"]
    file = tmp_path / "protection" / "a-deleted.json"
    delete = {**base, "indices": [6, 7], "beacon_url": url, "file": str(file)}
    plan, out = act("validator.keys_delete", delete)
    assert "delete validators 6, 7" in plan and "write the slashing-protection history" in plan
    assert km.signing == set()
    assert [s["status"] for s in out["statuses"]] == ["deleted", "deleted"]
    assert out["keys"] == 2 and out["marks"][0]["max_target_epoch"] == 10
    assert json.loads(file.read_text())["metadata"]["genesis_validators_root"] == ROOT
    again = act("validator.keys_delete", delete)[1]  # a retried step: the same history
    assert [s["status"] for s in again["statuses"]] == ["not_active", "not_active"]
    assert again["sha256"] == out["sha256"]
    said = registry.get("validator.keys_delete").describe(out)  # type: ignore[union-attr]
    assert said == "2 keys deleted at the client; history of 2 keys in a-deleted.json"
    assert TOKEN not in json.dumps([out, again, listed, plan])


def test_a_wrong_token_or_a_refused_address_is_refused_and_the_token_never_shows(
    server: tuple[Keymanager, str], tmp_path: Path
) -> None:
    km, url = server
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("api-token-0xnotit")
    with pytest.raises(PermanentError, match=r"refused the token in .*wrong.txt \(HTTP 401\)") as e:
        act("validator.keys_list", {"url": url, "token_file": str(wrong)})
    assert TOKEN not in str(e.value) and "notit" not in str(e.value)
    with pytest.raises(PermanentError, match="cannot read the keymanager token file"):
        act("validator.keys_list", {"url": url, "token_file": str(tmp_path / "none.txt")})
    with pytest.raises(EgressRefused):
        act("validator.keys_list", {"url": "http://10.9.8.7:5062", "token_file": str(wrong)})
    with pytest.raises(ValueError, match="token_file must be an absolute path"):
        act("validator.keys_list", {"url": url, "token_file": "api-token.txt"})
    with pytest.raises(PermanentError, match="the beacon node knows no validator 9"):
        target = {"url": url, "token_file": str(wrong), "indices": [6, 9], "beacon_url": url}
        act("validator.keys_delete", {**target, "file": str(tmp_path / "x.json")})
    assert km.requests == [] and km.signing == set(KEYS.values())  # nothing deleted
