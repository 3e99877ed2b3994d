"""Every shipped runbook that touches the lab, SIGKILLed at every step, and every decision a
person can take after a crash (resume, skip, abort) ends with the system in service or the
run saying exactly what is not.

Workers are real processes (forked by :mod:`tests.worker_zygote`), killed by SIGKILL where they
stopped dead: right after a step was marked started (before its side effect), or right after a
step kept the state it read before its first attempt. Each kill ends the dead worker's lease
(what the clock would do a lease later); a fresh worker takes the run over. One lab serves the
module and is put back to healthy after each case; the run is approved as bob, the incident's
commander.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.ledger import control
from incidentbot.ledger import service as ledger
from incidentbot.runbooks import approvals, planning, recovery, run_context, runtime
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks import view as views
from incidentbot.runbooks.actions import Services, registry
from incidentbot.runbooks.loader import load_dirs
from incidentbot.sandbox.lab import BACKEND, NODES, Lab
from tests.lab_support import healthy_lab, lab, needs_lab, rpc_post, wait_for  # noqa: F401 - fixtures
from tests.ledger_harness import expire_leases
from tests.worker_zygote import Child, Zygote

REPO = Path(__file__).resolve().parent.parent
LEASE = 30.0  # long: a busy machine never loses it; a kill ends it (_replace_paused)
pytestmark = [pytest.mark.usefixtures("healthy_lab"), needs_lab]


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    forker = Zygote()
    yield forker
    forker.close()


WAIT = 120.0  # seconds: workers start slowly on a busy machine


class Bot:
    """A SQLite database with INC-1 (commander bob), the runbooks pointed at the lab, and
    worker processes that are killed where they pause."""

    def __init__(self, lab: Lab, template: Path, tmp_path: Path, zygote: Zygote):  # noqa: F811
        path = tmp_path / "incidentbot.db"
        path.write_bytes(template.read_bytes())
        self.url = f"sqlite:///{path}"
        self.engine = db.make_engine(self.url)
        self.settings = Settings(
            runbooks={"dirs": [str(REPO / "runbooks")], **lab.runbook_settings()}
        )
        with db.transaction(self.engine) as s:
            svc.declare(
                s, self.settings, title="RPC", severity="SEV1", actor="alice", commander="bob"
            )
        runtime.install(self.engine, self.settings)
        self.tmp_path = tmp_path
        self.zygote = zygote
        self.children: list[Child] = []
        self.kills: list[str] = []
        self.pause = ""
        self.pause_steps = ""

    def worker(self) -> Child:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
        env.update(
            INCIDENTBOT_DATABASE_URL=self.url,
            INCIDENTBOT_RUNBOOKS__DIRS=json.dumps([str(d) for d in self.settings.runbooks.dirs]),
            INCIDENTBOT_RUNBOOKS__VARS=json.dumps(self.settings.runbooks.vars),
            INCIDENTBOT_RUNBOOKS__EGRESS=self.settings.runbooks.egress.model_dump_json(),
            ZYGOTE_PAUSE=self.pause,
            ZYGOTE_PAUSE_STEPS=self.pause_steps,
            ZYGOTE_PAUSE_DIR=str(self.tmp_path),
        )
        name = f"worker-{len(self.children) + 1}"
        argv = ["worker", "--threads", "1", "--lease", str(LEASE), "--poll", "0.05",
                "--name", name, "--grace", "0"]  # fmt: skip
        child = self.zygote.spawn(env, self.tmp_path / f"{name}.log", argv)
        self.children.append(child)
        return child

    def logs(self) -> str:
        return "\n".join(f"----- {c.log_path.name} -----\n{c.log()}" for c in self.children)

    def drive(self, done: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
        """Keep one worker alive until ``done``: each time it pauses, SIGKILL it and fork
        another."""
        current = self.children[-1] if self.children else self.worker()
        try:
            wait_for(lambda: done() or self._replace_paused(), what, timeout)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {what}\n{self.logs()}") from None
        del current

    def _replace_paused(self) -> bool:
        current = self.children[-1]
        paused = current.paused()
        if paused:
            assert current.kill() == -9
            expire_leases(self.engine, f"worker-{len(self.children)}/")
            self.kills.append(paused)
            self.worker()
        return False

    def close(self) -> None:
        for child in self.children:
            child.kill()
        self.engine.dispose()

    # -- runs ------------------------------------------------------------------------------

    def start(self, name: str, **params: object) -> int:
        """Plan and start a run as alice, approved by bob (the worker parks it first)."""
        runbook = load_dirs(self.settings.runbooks.dirs, registry).get(name)
        assert runbook is not None
        with db.transaction(self.engine) as s:
            info = run_context.incident_info(s, svc.get(s, "INC-1"))
        plan = planning.plan(runbook, params, incident=info,
                             variables=self.settings.runbooks.vars,
                             services=Services(settings=self.settings))  # fmt: skip
        with db.transaction(self.engine) as s:
            row = rb_engine.start(s, self.settings, plan, key=str(uuid.uuid4()),
                                  requester="alice", incident=svc.get(s, "INC-1"),
                                  source="cli")  # fmt: skip
            run_id = row.run_id
        if runbook.approval != "none":
            self.drive(lambda: self.view(run_id).status == "awaiting_approval", f"{name} to ask")
            outcome = approvals.decide(self.engine, self.settings, run_id, "bob", "approved")
            assert outcome.accepted, outcome.message
        return run_id

    def decide(self, run_id: int, decision: str) -> str:
        """bob's decision on a run that needs attention: resume, skip or abort."""
        with db.transaction(self.engine) as s:
            if decision == "abort":
                return control.cancel(s, run_id, actor="bob", reason="in Slack")
            return recovery.resume(s, run_id, actor="bob", skip=decision == "skip")

    def view(self, run_id: int) -> views.RunView:
        with db.transaction(self.engine) as s:
            return views.load(s, run_id)

    def status(self, run_id: int) -> str:
        with db.transaction(self.engine) as s:
            return ledger.get_run(s, run_id).status

    def until_stopped(self, run_id: int) -> views.RunView:
        """Drive the run until it ended or needs attention."""
        self.drive(lambda: self.status(run_id) not in ("pending", "running", "parked"),
                   "the run to end or need attention")  # fmt: skip
        return self.view(run_id)

    def notes(self) -> list[str]:
        with db.transaction(self.engine) as s:
            return [e.summary for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "note"]

    def step_number(self, run_id: int, step_id: str) -> int:
        with db.transaction(self.engine) as s:
            steps = ledger.get_steps(s, run_id)
        return next(st.number for st in steps if (st.input or {}).get("step") == step_id)


@pytest.fixture
def bot(lab: Lab, sqlite_template: Path, tmp_path: Path, zygote: Zygote) -> Iterator[Bot]:  # noqa: F811
    made = Bot(lab, sqlite_template, tmp_path, zygote)
    yield made
    made.close()


# -- what "in service" means -------------------------------------------------------------------


def assert_in_service(lab: Lab) -> None:  # noqa: F811
    """Every node running and UP in HAProxy, every head advancing."""
    for node in NODES:
        assert lab.supervisor.state(node).running, node
        assert lab.server(node).state == "UP", (node, lab.server(node))
    heads = {node: lab.head(node) for node in NODES}
    wait_for(lambda: all(lab.head(n) > heads[n] for n in NODES), "every head to advance", 30)


def admin(lab: Lab, node: str) -> str:  # noqa: F811
    """The admin state HAProxy keeps for ``node`` (READY shows as UP or DOWN; DRAIN, MAINT)."""
    return {row.server: row.state for row in lab.haproxy.server_states(BACKEND)}[node]


def served_by(lab: Lab) -> str:  # noqa: F811
    return rpc_post(lab.frontend_url, "eth_blockNumber").headers["X-Served-By"]


def outputs(run: views.RunView, step: str) -> dict:
    return next(s.output for s in run.steps if s.id == step)


def needs_attention_at(bot: Bot, run_id: int, label: str) -> views.RunView:
    run = bot.until_stopped(run_id)
    assert run.status == "needs_attention", (run.status, run.error, bot.logs())
    assert label in run.error and "may or may not have happened" in run.error, run.error
    return run


# -- failover-rpc-provider ---------------------------------------------------------------------


def test_failover_killed_at_every_step_and_half_way_through_the_move(lab: Lab, bot: Bot) -> None:  # noqa: F811
    """First in the module: the lab's nodes are still level (a node the cases below stop or
    restore stays behind for good, and the backups must be ahead of the frozen primary)."""
    before = {row.server: row.state for row in lab.haproxy.server_states(BACKEND)}
    lab.fault("node-1", "freeze")
    frozen_at = lab.head("node-1")
    wait_for(lambda: lab.head("node-2") > frozen_at + 3, "the backups to pull ahead", WAIT)
    bot.pause = "started,remembered"
    run_id = bot.start("failover-rpc-provider", max_lag=3)
    move = bot.step_number(run_id, "move")

    def half_way() -> bool:
        # The worker kept the states and stopped dead before changing any: do half of the
        # move by hand, as a crash half-way through would leave it.
        if any(f"step={move} at=remembered" in k for k in bot.kills):
            return True
        bot._replace_paused()
        return False

    wait_for(half_way, "the move to keep the states it read", WAIT)
    lab.haproxy.set_state(BACKEND, "node-1", "drain")
    run = bot.until_stopped(run_id)
    assert run.status == "succeeded", (run.error, bot.logs())
    best = outputs(run, "heads")["best"]
    # What the move reports as before is the state before the run, not the half-applied one.
    assert outputs(run, "move")["previous"] == before, outputs(run, "move")
    assert served_by(lab) == best
    assert lab.server(best).state == "UP"
    head = lab.head(best)
    wait_for(lambda: lab.head(best) > head, "the served node's head to advance", WAIT)
    assert len(bot.kills) >= 9, bot.kills


# -- restart-node ------------------------------------------------------------------------------


# A stopped lab node mines on from its old height after a restart and never catches up (the
# nodes do not peer), and a run killed at every step keeps it stopped for many blocks: the
# runs accept any lag, so "caught up" means "answers and mines".
ANY_LAG = 100_000


def stopped_node(lab: Lab) -> None:  # noqa: F811
    lab.fault("node-2", "stop")
    wait_for(lambda: lab.server("node-2").state == "DOWN", "HAProxy to see node-2 down", WAIT)


def test_restart_node_killed_at_every_step_then_resumed(lab: Lab, bot: Bot) -> None:  # noqa: F811
    stopped_node(lab)
    bot.pause = "started"
    run_id = bot.start("restart-node", node="node-2", max_lag=ANY_LAG)
    needs_attention_at(bot, run_id, "Restart it")
    assert admin(lab, "node-2") == "DRAIN"  # drained, not restarted: the kill came first
    bot.decide(run_id, "resume")
    run = bot.until_stopped(run_id)
    assert run.status == "succeeded", (run.error, bot.logs())
    assert_in_service(lab)
    numbers = [int(k.split("step=")[1].split()[0]) for k in bot.kills]
    assert numbers == sorted(set(numbers)) and len(numbers) >= 10, bot.kills  # every step once
    assert any(n.startswith("Restarted node-2 (pid") for n in bot.notes()), bot.notes()


def test_restart_node_killed_in_the_restart_then_skipped(lab: Lab, bot: Bot) -> None:  # noqa: F811
    stopped_node(lab)
    bot.pause, bot.pause_steps = "started", "7"  # announce-less: approval, 5 steps, restart
    run_id = bot.start("restart-node", node="node-2", max_lag=ANY_LAG)
    assert bot.step_number(run_id, "restart") == 7
    needs_attention_at(bot, run_id, "Restart it")
    lab.fault("node-2", "start")  # a person restarted it by hand: it happened
    bot.decide(run_id, "skip")
    run = bot.until_stopped(run_id)
    assert run.status == "succeeded", (run.error, bot.logs())
    assert_in_service(lab)
    assert any("the restart step was skipped" in n for n in bot.notes()), bot.notes()


def test_restart_node_killed_in_the_restart_then_aborted(lab: Lab, bot: Bot) -> None:  # noqa: F811
    stopped_node(lab)
    # killed in the restart, then again in the clean-up steps the abort runs
    bot.pause, bot.pause_steps = "started", "7,9,10"
    run_id = bot.start("restart-node", node="node-2", max_lag=ANY_LAG)
    assert [bot.step_number(run_id, s) for s in ("back_check", "undrain")] == [9, 10]
    needs_attention_at(bot, run_id, "Restart it")
    said = bot.decide(run_id, "abort")
    assert "running its clean-up steps first (Is it healthy now?, Put it back" in said, said
    run = bot.until_stopped(run_id)
    assert run.status == "cancelled", run.error
    assert run.error.startswith("cancelled by bob: in Slack (step 7 'Restart it' was left")
    assert run.error.endswith(
        "; ran the clean-up steps: Is it healthy now?, Otherwise say so, and page"
    ), run.error
    assert [k.split()[2] for k in bot.kills] == ["step=7", "step=9", "step=10"], bot.kills
    # node-2 was never restarted: it stays out of the pool, and the run says so
    assert admin(lab, "node-2") == "DRAIN"
    assert any(
        f"node-2 is left drained in HAProxy backend {BACKEND}: does not answer" in n
        for n in bot.notes()
    ), bot.notes()
    for node in ("node-1", "node-3"):
        assert lab.server(node).state == "UP"


# -- restore-snapshot --------------------------------------------------------------------------


def corrupt_node(lab: Lab) -> str:  # noqa: F811
    snapshot = lab.snapshot("node-3")
    lab.fault("node-3", "corrupt")
    wait_for(lambda: lab.server("node-3").state == "DOWN", "HAProxy to see node-3 down", WAIT)
    return snapshot.id


def test_restore_killed_at_every_step_then_resumed(lab: Lab, bot: Bot) -> None:  # noqa: F811
    corrupt_node(lab)
    bot.pause = "started"
    run_id = bot.start("restore-snapshot", node="node-3")
    needs_attention_at(bot, run_id, "Stop it, restore the snapshot, start it")
    bot.decide(run_id, "resume")
    run = bot.until_stopped(run_id)
    assert run.status == "succeeded", (run.error, bot.logs())
    assert_in_service(lab)
    assert len(bot.kills) >= 8, bot.kills


def test_restore_killed_in_the_restore_then_skipped(lab: Lab, bot: Bot) -> None:  # noqa: F811
    snapshot = corrupt_node(lab)
    bot.pause, bot.pause_steps = "started", "5"  # approval, pick, have_one, drain, restore
    run_id = bot.start("restore-snapshot", node="node-3")
    assert bot.step_number(run_id, "restore") == 5
    needs_attention_at(bot, run_id, "Stop it, restore the snapshot, start it")
    lab.restore("node-3", snapshot)  # a person restored it by hand: it happened
    bot.decide(run_id, "skip")
    run = bot.until_stopped(run_id)
    assert run.status == "succeeded", (run.error, bot.logs())
    assert_in_service(lab)
    assert any(
        f"Restored node-3 from snapshot {snapshot} (the restore step was skipped" in n
        for n in bot.notes()
    ), bot.notes()


def test_restore_killed_in_the_restore_then_aborted(lab: Lab, bot: Bot) -> None:  # noqa: F811
    corrupt_node(lab)
    bot.pause, bot.pause_steps = "started", "5"
    run_id = bot.start("restore-snapshot", node="node-3")
    needs_attention_at(bot, run_id, "Stop it, restore the snapshot, start it")
    try:
        bot.decide(run_id, "abort")
        run = bot.until_stopped(run_id)
        assert run.status == "cancelled", run.error
        assert run.error.endswith("Otherwise say so, and page"), run.error
        assert admin(lab, "node-3") == "DRAIN"  # still corrupt: not put back
        assert any(
            f"node-3 is left drained in HAProxy backend {BACKEND}" in n for n in bot.notes()
        ), bot.notes()
    finally:
        lab.fault("node-3", "reset")  # a fresh chain, so the next case finds it healthy


def test_restore_aborted_while_the_node_is_healthy_puts_it_back(lab: Lab, bot: Bot) -> None:  # noqa: F811
    snapshot = lab.snapshot("node-3")
    # killed in the restore, then again in the clean-up steps that put it back
    bot.pause, bot.pause_steps = "started", "5,7,8"
    run_id = bot.start("restore-snapshot", node="node-3", snapshot=snapshot.id)
    assert [bot.step_number(run_id, s) for s in ("back_check", "undrain")] == [7, 8]
    needs_attention_at(bot, run_id, "Stop it, restore the snapshot, start it")
    assert admin(lab, "node-3") == "DRAIN"
    bot.decide(run_id, "abort")
    run = bot.until_stopped(run_id)
    assert run.status == "cancelled", run.error
    assert run.error.endswith(
        "; ran the clean-up steps: Is it healthy now?, Put it back, "
        "Verify the load balancer sees it up"
    ), run.error
    assert [k.split()[2] for k in bot.kills] == ["step=5", "step=7", "step=8"], bot.kills
    assert_in_service(lab)


# -- http-check --------------------------------------------------------------------------------


def test_http_check_killed_at_every_step(lab: Lab, bot: Bot) -> None:  # noqa: F811
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()  # fmt: skip
    try:
        bot.pause = "started"
        url = f"http://127.0.0.1:{server.server_address[1]}/health"
        run_id = bot.start("http-check", url=url)
        run = bot.until_stopped(run_id)
    finally:
        server.shutdown()
        server.server_close()
    assert run.status == "succeeded", (run.error, bot.logs())
    assert len(bot.kills) == 2, bot.kills  # both steps
    assert any(n.startswith(f"http-check: {url} answered 200") for n in bot.notes())


class _Health(BaseHTTPRequestHandler):
    """A health endpoint that answers 200."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass
