"""Failover on the lab: "primary frozen" to "traffic on the backup" with failover-rpc-provider,
beside HAProxy's own health-check failover (a stopped primary), measured in the same run.

A frozen node still answers eth_blockNumber, so HAProxy's health check keeps sending it
traffic; the runbook notices the primary falling behind (rpc.heads, polled every 0.5 s as an
alert would, here with max_lag 3 blocks at one block per second), is approved at once, and
moves the traffic. A stopped node fails the health check, and HAProxy moves traffic on its own
(check every 1 s, down after 2 failures). Times are from the fault to the first request through
the frontend answered by a backup. Needs the lab (HAProxy and anvil). No assertions.

    .venv/bin/python bench/failover.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

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


def served_by(lab: Lab) -> str | None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    try:
        return httpx.post(lab.frontend_url, json=body, timeout=2).headers.get("X-Served-By")
    except httpx.HTTPError:
        return None


def until(check, timeout: float = 120.0, every: float = 0.02) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise SystemExit("timed out")
        time.sleep(every)
    return time.monotonic()


def heal(lab: Lab) -> None:
    for node in NODES:
        if not lab.supervisor.state(node).running:
            lab.supervisor.start(node)
        lab.fault(node, "unfreeze")
        lab.haproxy.set_state(BACKEND, node, "ready")
    for node in NODES:
        lab.wait_server(node, "UP", timeout=30)
    until(lambda: served_by(lab) == "node-1")


def haproxy_failover(lab: Lab) -> float:
    t0 = time.monotonic()
    lab.fault("node-1", "stop")
    moved = until(lambda: served_by(lab) not in ("node-1", None))
    return moved - t0


def runbook_failover(lab: Lab, engine, settings: Settings) -> tuple[float, float]:
    heads = registry.get("rpc.heads")
    inputs = heads.validate({"nodes": lab.runbook_vars()["nodes"], "max_lag": MAX_LAG})
    ctx = ActionContext(run_id=None, step_id="alert", services=Services(settings=settings))
    t0 = time.monotonic()
    lab.fault("node-1", "freeze")
    detected = until(lambda: not heads.run(inputs, ctx)["nodes"]["node-1"]["healthy"], every=0.5)
    runbook = load_dirs([REPO / "runbooks"], registry).get("failover-rpc-provider")
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
            s, settings, plan, key=str(uuid.uuid4()), requester="alice", incident=incident,
            source="cli",
        ).run_id  # fmt: skip
    pool = WorkerPool(engine, threads=1, poll=0.02, only_run=rid).start()
    try:

        def status() -> str:
            with db.transaction(engine) as s:
                return views.load(s, rid).status

        until(lambda: status() == "awaiting_approval")
        approvals.decide(engine, settings, rid, "bob", "approved")
        moved = until(lambda: served_by(lab) not in ("node-1", None))
        until(lambda: status() in ("succeeded", "failed"))
        if status() != "succeeded":
            raise SystemExit(f"the failover run ended {status()}")
    finally:
        pool.stop(timeout=10)
    return detected - t0, moved - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if missing():
        print("lab not installed: " + "; ".join(missing()))
        return 1
    with tempfile.TemporaryDirectory() as tmp, Lab(Path(tmp) / "lab") as lab:
        engine = db.make_engine(f"sqlite:///{tmp}/bench.db")
        db.upgrade(engine)
        settings = Settings(runbooks=lab.runbook_settings())
        runtime.install(engine, settings)
        with db.transaction(engine) as s:
            svc.declare(s, settings, title="bench", severity="SEV1", actor="alice", commander="bob")
        own, detect, total = [], [], []
        for _ in range(args.repeat):
            heal(lab)
            own.append(haproxy_failover(lab))
            heal(lab)
            d, t = runbook_failover(lab, engine, settings)
            detect.append(d)
            total.append(t)
        heal(lab)
        engine.dispose()
    med = statistics.median
    print(
        f"HAProxy health check, primary stopped:   traffic on a backup after {med(own):5.2f} s "
        f"median (min {min(own):.2f}, max {max(own):.2f}; check every 1 s, fall 2)"
    )
    print(
        f"failover-rpc-provider, primary frozen:   traffic on a backup after {med(total):5.2f} s "
        f"median (min {min(total):.2f}, max {max(total):.2f}), of which "
        f"{med(detect):.2f} s until the primary was {MAX_LAG} blocks behind and "
        f"{med(total) - med(detect):.2f} s the runbook (plan, start, approval, 5 steps)"
    )
    print("HAProxy alone never moves traffic off a frozen primary: its health check still passes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
