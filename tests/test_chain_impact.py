"""Impact in chain units: samples of a beacon node into an open incident's timeline, and the
postmortem's figures added up from them, each saying where it came from.

The beacon node is an HTTP server in the test process that answers the Beacon API endpoints
the sampler reads; the test moves its head from epoch to epoch. Both liveness endpoints are
exercised: the standard POST and the older GET that Lodestar 1.5 answers instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.impact.sampler import parse_indices, sample
from incidentbot.incidents import service as svc
from incidentbot.policy_models import DEFAULT_FIELDS, FieldSpec
from incidentbot.postmortems.render import render
from incidentbot.scheduler.builtin import IMPACT_JOB, builtin_jobs

PER_EPOCH = 8
KEY = "s3cretBeaconKey0123456789"


class Beacon:
    """A beacon node's answers: the test sets the head, liveness, duties and blocks."""

    def __init__(self, *, legacy_liveness: bool = False) -> None:
        self.head_slot = 0
        self.sync_distance = 0
        self.finalized = 0
        self.not_live: dict[int, set[int]] = {}  # epoch -> indices that did not attest
        self.duties: dict[int, list[tuple[int, int]]] = {}  # epoch -> (slot, index)
        self.empty_slots: set[int] = set()
        self.legacy = legacy_liveness
        self.past_duties = True  # False: as Lodestar 1.5, duties of past epochs are a 500
        self.paths: list[str] = []
        beacon = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, data: Any = None) -> None:
                body = json.dumps({"data": data} if code == 200 else {"code": code}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                beacon.paths.append(f"GET {url.path}")
                query = parse_qs(url.query)
                if query.get("key") != [KEY]:
                    return self._send(401)
                self._send(*beacon.answer(url.path, query, None))

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                beacon.paths.append(f"POST {url.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                self._send(*beacon.answer(url.path, parse_qs(url.query), body))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/?key={KEY}"

    def answer(self, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if path == "/eth/v1/config/spec":
            return 200, {"SLOTS_PER_EPOCH": str(PER_EPOCH)}
        if path == "/eth/v1/node/syncing":
            return 200, {"head_slot": str(self.head_slot), "sync_distance": str(self.sync_distance)}
        if path == "/eth/v1/beacon/states/head/finality_checkpoints":
            return 200, {"finalized": {"epoch": str(self.finalized), "root": "0x00"}}
        if path.startswith("/eth/v1/validator/liveness"):
            if body is not None and self.legacy:
                return 404, None
            if body is not None:
                epoch, indices = int(parts[-1]), [int(i) for i in body]
            else:
                epoch = int(query["epoch"][0])
                if any("," in v for v in query["indices"]):
                    return 400, None  # as Lodestar 1.5: one index per parameter
                indices = [int(i) for i in query["indices"]]
            missed = self.not_live.get(epoch, set())
            return 200, [{"index": str(i), "is_live": i not in missed} for i in indices]
        if path.startswith("/eth/v1/validator/duties/proposer/"):
            if not self.past_duties and int(parts[-1]) < self.head_slot // PER_EPOCH:
                return 500, None
            duties = self.duties.get(int(parts[-1]), [])
            return 200, [{"slot": str(s), "validator_index": str(i)} for s, i in duties]
        if path.startswith("/eth/v1/beacon/headers/"):
            slot = int(parts[-1])
            return (404, None) if slot in self.empty_slots else (200, {"root": "0x01"})
        return 404, None

    def at_epoch(self, epoch: int) -> None:
        self.head_slot = epoch * PER_EPOCH + 1

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=[False, True], ids=["post-liveness", "get-liveness"])
def beacon(request: pytest.FixtureRequest) -> Iterator[Beacon]:
    node = Beacon(legacy_liveness=request.param)
    yield node
    node.close()


def settings_for(beacon: Beacon) -> Settings:
    fields = [*DEFAULT_FIELDS, FieldSpec(name="validators", label="Validators")]
    return Settings(fields=fields, impact={"beacon_url": beacon.url, "every": 12})


NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


def samples(engine, ref: str = "INC-1") -> list[str]:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        events = svc.timeline(s, svc.get(s, ref))
        return [e.summary for e in events if e.kind == "impact.sample"]


def test_an_open_validator_incident_gets_one_sample_per_epoch(engine, beacon):
    settings = settings_for(beacon)
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="Validators offline", severity="SEV2", actor="alice",
                    fields={"validators": "4-7"}, now=NOW)  # fmt: skip
        svc.declare(s, settings, title="RPC slow", severity="SEV3", actor="alice", now=NOW)
    beacon.at_epoch(4)
    beacon.sync_distance, beacon.finalized = 3, 1
    beacon.not_live[3] = {5, 6}
    beacon.duties[3] = [(26, 6), (27, 1)]  # 1 is not ours
    beacon.empty_slots = {26, 27}

    assert sample(engine, settings, NOW) == 1
    source = f"beacon node 127.0.0.1:{beacon.server.server_port}"
    assert samples(engine) == [
        "Chain impact, epoch 3: 2 of 4 validators live (not live: 5, 6); 1 of 1 proposals "
        f"missed; head 3 slots behind; finalized epoch 1 ({source})"
    ]
    assert samples(engine, "INC-2") == []  # no validators listed: nothing is read for it
    assert sample(engine, settings, NOW) == 0  # the same epoch again: nothing new

    beacon.at_epoch(5)
    beacon.sync_distance, beacon.finalized = 0, 3
    beacon.not_live[4] = {5}
    assert sample(engine, settings, NOW) == 1
    assert samples(engine)[-1] == (
        "Chain impact, epoch 4: 3 of 4 validators live (not live: 5); 0 of 0 proposals "
        f"missed; head 0 slots behind; finalized epoch 3 ({source})"
    )

    with db.transaction(engine) as s:
        svc.resolve(s, settings, "INC-1", "validators back", actor="alice")
    beacon.at_epoch(6)
    assert sample(engine, settings, NOW) == 0  # a resolved incident is no longer sampled

    with db.transaction(engine) as s:
        rendered = render(s, settings, svc.get(s, "INC-1"), "md")
        text = rendered.text
        timeline = " ".join(e.summary for e in svc.timeline(s, svc.get(s, "INC-1")))
    where = f"2 samples, epochs 3–4; {source}"
    assert (
        f"- **Missed attestations** (validators not live, from liveness: {where}): "
        "3 of 8 validator-epochs" in text
    )
    assert f"- **Missed proposals** (proposer duties without a block: {where}): 1 of 1" in text
    assert f"- **Max slots behind** (beacon node sync distance: {where}): 3 slots" in text
    assert (
        "- **Finality delay** (epochs beyond the usual 2 between head and finalized: "
        f"{where}): 1 epoch" in text
    )
    assert KEY not in text and KEY not in timeline


def test_proposals_from_a_node_that_gives_only_current_duties(engine, beacon):
    """The sampler keeps the current epoch's duties and uses them once it has ended; an epoch
    whose duties nobody kept says proposals are unknown, and the postmortem leaves it out."""
    settings = settings_for(beacon)
    beacon.past_duties = False
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="Validators offline", severity="SEV2", actor="alice",
                    fields={"validators": "4-7"}, now=NOW)  # fmt: skip
    beacon.duties = {2: [(17, 6)], 3: [(26, 6)]}
    beacon.empty_slots = {17, 26}
    beacon.at_epoch(3)
    assert sample(engine, settings, NOW) == 1  # epoch 2: its duties are gone
    assert samples(engine)[-1].endswith(
        "; proposals unknown (the node no longer gives this epoch's duties); head 0 slots "
        f"behind; finalized epoch 0 (beacon node 127.0.0.1:{beacon.server.server_port})"
    )
    beacon.at_epoch(4)
    assert sample(engine, settings, NOW) == 1  # epoch 3: duties kept while it was current
    assert "; 1 of 1 proposals missed;" in samples(engine)[-1]
    with db.transaction(engine) as s:
        text = render(s, settings, svc.get(s, "INC-1"), "md").text
    assert "(1 without duties, not counted)): 1 of 1" in text


def test_bad_validator_lists_are_refused_with_a_reason():
    assert parse_indices("4-7, 12") == [4, 5, 6, 7, 12]
    with pytest.raises(Exception, match="'0xabc' is not a validator index or range"):
        parse_indices("0xabc")
    with pytest.raises(Exception, match="a range goes from low to high"):
        parse_indices("7-4")


def test_a_postmortem_without_samples_shows_no_chain_figures(engine, beacon):
    settings = settings_for(beacon)
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC slow", severity="SEV3", actor="alice", now=NOW)
        text = render(s, settings, svc.get(s, "INC-1"), "md").text
    assert "Missed attestations" not in text and "Finality delay" not in text


def test_the_sampling_job_runs_at_the_configured_cadence_only_with_a_beacon_node(beacon):
    job = builtin_jobs(settings_for(beacon), None)[IMPACT_JOB]
    assert (job.every, job.enabled, job.idempotent) == (12, True, True)
    assert builtin_jobs(Settings(), None)[IMPACT_JOB].enabled is False
