"""restart-node never leaves a drained node behind silently, on the real lab: cancelled while it
waits for the node to catch up, or out of time before the step that puts it back, its clean-up
steps put the node back in the pool (or say what state it is left in).

The test holds the run in its catch-up step with a gate of its own: the runbook reads node-2
through a small proxy that answers 503 until the test opens it, so "the run is waiting in
catch-up" is a state the test reads, not a moment it guesses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from incidentbot import db, ledger
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.ledger import control
from incidentbot.ledger.worker import WorkerPool
from incidentbot.runbooks import approvals, planning, runtime
from incidentbot.runbooks import view as views
from incidentbot.sandbox.lab import Lab
from tests.lab_support import healthy_lab, lab, start_runbook, wait_for  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("healthy_lab")


class Gate:
    """An HTTP proxy to one node: 503 while closed, the node's own answer once open."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.open = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not gate.open.is_set():
                    status, payload = 503, b"held by the test"
                else:
                    response = httpx.post(
                        gate.upstream,
                        content=body,
                        headers={"Content-Type": "application/json"},
                        timeout=5,
                    )
                    status, payload = response.status_code, response.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate(lab: Lab) -> Iterator[Gate]:  # noqa: F811
    held = Gate(lab.node_url("node-2"))
    yield held
    held.close()


@pytest.fixture
def bot(lab: Lab, gate: Gate, sqlite_template: Path, tmp_path: Path):  # noqa: F811
    """INC-1 (commander bob); the runbooks read node-2 through the gate."""
    path = tmp_path / "incidentbot.db"
    path.write_bytes(sqlite_template.read_bytes())
    engine = db.make_engine(f"sqlite:///{path}")
    runbooks = lab.runbook_settings()
    runbooks["vars"]["nodes"]["node-2"]["url"] = gate.url
    settings = Settings(runbooks={"dirs": [str(REPO / "runbooks")], **runbooks})
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC", severity="SEV1", actor="alice", commander="bob")
    runtime.install(engine, settings)
    pool = WorkerPool(engine, threads=2, poll=0.05)
    yield engine, settings, pool
    pool.stop(timeout=10)
    engine.dispose()


def start_restart(bot) -> int:
    """Start restart-node for node-2 and approve it (as bob); the workers start on it."""
    engine, settings, pool = bot
    rid = start_runbook(engine, settings, "restart-node", {"node": "node-2"})
    pool.start()
    wait_for(lambda: state(engine, rid).status == "awaiting_approval", what="the approval ask")
    assert approvals.decide(engine, settings, rid, "bob", "approved").accepted
    return rid


def state(engine, rid: int) -> views.RunView:
    with db.transaction(engine) as s:
        return views.load(s, rid)


def step_state(engine, rid: int, step_id: str) -> str:
    return next(s.status for s in state(engine, rid).steps if s.id == step_id)


def waiting_in_catch_up(engine, rid: int, lab: Lab) -> None:  # noqa: F811
    wait_for(
        lambda: step_state(engine, rid, "catch_up") == "running",
        what="the run to wait in its catch-up step",
        timeout=60,
    )
    assert lab.server("node-2").state == "DRAIN"


def timeline(engine) -> list[tuple[str, str]]:
    with db.transaction(engine) as s:
        return [(e.kind, e.summary) for e in svc.timeline(s, svc.get(s, "INC-1"))]


def test_cancelling_while_it_waits_to_catch_up_puts_the_node_back(
    lab: Lab,  # noqa: F811
    gate: Gate,
    bot,
) -> None:
    engine, _settings, _pool = bot
    rid = start_restart(bot)  # node-2 "does not answer" through the closed gate
    waiting_in_catch_up(engine, rid, lab)
    with db.transaction(engine) as s:
        said = control.cancel(s, rid, actor="alice")
    assert "cancel requested" in said and "Put it back" in said
    gate.open.set()  # the node answers: the catch-up step ends, the cancel takes effect
    run = wait_for(lambda: (v := state(engine, rid)).ended and v, what="the run to end", timeout=90)
    assert run.status == "cancelled"
    assert run.error.startswith("cancelled by alice; ran the clean-up steps: ")
    assert "Put it back" in run.error and "Verify the load balancer sees it up" in run.error
    lab.wait_server("node-2", "UP")
    assert lab.server("node-2").state == "UP"
    statuses = {s.id: s.status for s in state(engine, rid).steps}
    assert statuses["undrain"] == "done" and statuses["note"] == "skipped"
    assert statuses["left_drained"] == "skipped"
    kinds = [kind for kind, _ in timeline(engine)]
    assert "runbook.cancelled" in kinds


def test_the_runbook_timeout_before_the_undrain_still_puts_the_node_back(
    lab: Lab,  # noqa: F811
    gate: Gate,
    bot,
) -> None:
    engine, _settings, _pool = bot
    rid = start_restart(bot)
    waiting_in_catch_up(engine, rid, lab)
    # The runbook's 15m timeout counts from the approval: move the approval a day back, so
    # the deadline has passed when the catch-up step ends.
    with db.transaction(engine) as s:
        approval = next(
            st for st in ledger.get_steps(s, rid) if st.action == planning.APPROVAL_ACTION
        )
        assert approval.finished_at is not None
        approval.finished_at -= timedelta(days=1)
        s.add(approval)
    gate.open.set()
    run = wait_for(lambda: (v := state(engine, rid)).ended and v, what="the run to end", timeout=90)
    assert run.status == "failed"
    assert "the runbook's timeout of 15m passed before step back" in run.error
    lab.wait_server("node-2", "UP")
    statuses = {s.id: s.status for s in run.steps}
    assert statuses["undrain"] == "done" and statuses["verify"] == "done"
    assert statuses["note"] == "skipped"
