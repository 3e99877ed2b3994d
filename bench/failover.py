"""Failover on the lab: from a fault on a primary that was in step with the other nodes, until
the first request through the HAProxy frontend is answered by a backup. Two paths, measured in
the same run, each repeat from a freshly healed lab with every node at the same head:

- HAProxy's own health check, primary stopped (check every 1 s, down after 2 failures);
- failover-rpc-provider, primary frozen (it still answers eth_blockNumber, so HAProxy's check
  keeps sending it traffic and never moves it): an alert's check polls ``rpc.heads`` every
  ``ALERT_EVERY`` s until the primary is ``MAX_LAG`` blocks behind (one block per second), the
  runbook run is started as ``/incident run`` does, and the ledger workers run it with serve's
  own settings (its worker threads, lease and 1 s poll). The approval is given as soon as the
  run asks for it; the time it waited for that (start → "awaiting approval", found by a 0.1 s
  poll of the run) and the time from the approval to the traffic moving are reported apart.

Needs the lab (HAProxy and anvil); without it the benchmark fails and says what is missing.

    bench/run failover
    .venv/bin/python bench/failover.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.figures import BenchArgs, BenchFailed, Figure
from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.ledger.worker import WorkerPool
from incidentbot.runbooks import approvals, planning, run_context, runtime
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks import view as views
from incidentbot.runbooks.actions import ActionContext, Services, registry
from incidentbot.runbooks.loader import load_dirs
from incidentbot.sandbox.lab import BACKEND, NODES, Lab, missing

REPO = Path(__file__).resolve().parent.parent
MAX_LAG = 3
ALERT_EVERY = 0.5  # how often the simulated alert evaluates rpc.heads
SERVE_POLL = 1.0  # the ledger workers' poll in `incidentbot serve` (Bot.build's default)


def served_by(lab: Lab) -> str | None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    try:
        return httpx.post(lab.frontend_url, json=body, timeout=2).headers.get("X-Served-By")
    except httpx.HTTPError:
        return None


def until(check: Callable[[], bool], timeout: float = 120.0, every: float = 0.02) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise BenchFailed(f"timed out after {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic()


def heads(lab: Lab) -> dict[str, int]:
    out = {}
    for node in NODES:
        with lab.rpc(node) as rpc:
            out[node] = rpc.block_number()
    return out


def heal(lab: Lab) -> None:
    """Every node running, mining, UP in HAProxy and at the same head (the ones behind mine
    the missing blocks at once), traffic on node-1: each repeat starts from here."""
    for node in NODES:
        if not lab.supervisor.state(node).running:
            lab.supervisor.start(node)
        lab.fault(node, "unfreeze")
        lab.haproxy.set_state(BACKEND, node, "ready")
    for node in NODES:
        lab.wait_server(node, "UP", timeout=30)
    now = heads(lab)
    top = max(now.values())
    for node, head in now.items():
        if head < top:
            with lab.rpc(node) as rpc:
                rpc.call("anvil_mine", [hex(top - head), "0x0"])
    until(lambda: max(heads(lab).values()) - min(heads(lab).values()) <= 1, every=0.1)
    until(lambda: served_by(lab) == "node-1")


def haproxy_failover(lab: Lab) -> float:
    t0 = time.monotonic()
    lab.fault("node-1", "stop")
    moved = until(lambda: served_by(lab) not in ("node-1", None))
    return moved - t0


@dataclass
class RunbookTimes:
    detected: float  # fault → the alert's check sees the primary MAX_LAG blocks behind
    asked: float  # run started → it waits for approval
    moved: float  # approval → traffic on a backup

    @property
    def bot(self) -> float:
        """Fault → traffic moved, without the time a person takes to approve."""
        return self.detected + self.asked + self.moved


def runbook_failover(lab: Lab, engine, settings: Settings) -> RunbookTimes:  # type: ignore[no-untyped-def]
    check = registry.get("rpc.heads")
    assert check is not None
    inputs = check.validate({"nodes": lab.runbook_vars()["nodes"], "max_lag": MAX_LAG})
    ctx = ActionContext(run_id=None, step_id="alert", services=Services(settings=settings))
    runbook = load_dirs([REPO / "runbooks"], registry).get("failover-rpc-provider")
    pool = WorkerPool(
        engine,
        threads=settings.workers,
        lease=settings.worker_lease,
        poll=SERVE_POLL,
        name="bench",
    ).start()
    try:
        t0 = time.monotonic()
        lab.fault("node-1", "freeze")
        detected = until(
            lambda: not check.run(inputs, ctx)["nodes"]["node-1"]["healthy"], every=ALERT_EVERY
        )
        with db.transaction(engine) as s:
            incident = svc.get(s, "INC-1")
            plan = planning.plan(
                runbook,
                {"max_lag": MAX_LAG},
                incident=run_context.incident_info(s, incident),
                variables=settings.runbooks.vars,
                services=Services(settings=settings),
            )
            rid = rb_engine.start(
                s, settings, plan, key=str(uuid.uuid4()), requester="alice",
                incident=incident, source="slack",
            ).run_id  # fmt: skip

        def status() -> str:
            with db.transaction(engine) as s:
                return views.load(s, rid).status

        asked = until(lambda: status() == "awaiting_approval", every=0.1)
        approved = time.monotonic()
        approvals.decide(engine, settings, rid, "bob", "approved")
        moved = until(lambda: served_by(lab) not in ("node-1", None))
        until(lambda: status() in ("succeeded", "failed"), every=0.1)
        if status() != "succeeded":
            raise BenchFailed(f"the failover run ended {status()}")
    finally:
        pool.stop(timeout=10)
    return RunbookTimes(detected - t0, asked - detected, moved - approved)


def measure(repeat: int) -> tuple[list[float], list[RunbookTimes]]:
    if missing():
        raise BenchFailed("lab not installed: " + "; ".join(missing()))
    own: list[float] = []
    runs: list[RunbookTimes] = []
    with tempfile.TemporaryDirectory() as tmp, Lab(Path(tmp) / "lab") as lab:
        engine = db.make_engine(f"sqlite:///{tmp}/bench.db")
        db.upgrade(engine)
        settings = Settings(runbooks=lab.runbook_settings())
        runtime.install(engine, settings)
        with db.transaction(engine) as s:
            svc.declare(s, settings, title="bench", severity="SEV1", actor="alice", commander="bob")
        for _ in range(repeat):
            heal(lab)
            own.append(haproxy_failover(lab))
            heal(lab)
            runs.append(runbook_failover(lab, engine, settings))
        heal(lab)
        engine.dispose()
    return own, runs


def figures(args: BenchArgs) -> list[Figure]:
    repeat = 1 if args.quick else max(3, args.rounds)
    own, runs = measure(repeat)
    med = statistics.median
    haproxy = med(own) * 1000
    detect, asked = med(r.detected for r in runs), med(r.asked for r in runs)
    moved = med(r.moved for r in runs)
    return [
        Figure(
            f"HAProxy health check, primary stopped: fault → traffic on a backup (median of "
            f"{repeat}; {min(own):.2f}–{max(own):.2f} s)",
            haproxy,
            2000.0,
            baseline_name="its configured floor: check every 1 s, down after 2 failures",
        ),
        Figure(
            f"failover-rpc-provider, primary frozen: fault → traffic on a backup without the "
            f"approver's time (median of {repeat}) — alert's check {detect:.2f} s (primary "
            f"{MAX_LAG} blocks behind, polled every {ALERT_EVERY} s), run start → asks for "
            f"approval {asked:.2f} s, approval → traffic moved {moved:.2f} s (serve's workers, "
            f"{SERVE_POLL:g} s poll); HAProxy alone never moves a frozen primary",
            med(r.bot for r in runs) * 1000,
            haproxy,
            baseline_name="HAProxy's health check on a stopped primary, same run",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for f in figures(BenchArgs(rounds=args.repeat)):
        print(f"{f.name}: {f.value / 1000:.2f} s ({f.ratio:.2f}x {f.baseline_name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
