"""Test harness for the run ledger: an action pack, a side-effect counter, worker processes.

- Importing this module registers the ``harness.*`` actions, so ``incidentbot worker --import
  tests.ledger_harness`` runs them in a separate process.
- :class:`EffectServer` is a tiny HTTP server in the test process. Actions POST each side effect
  to it; it records every request, so the tests count effects outside the worker that made them.
- With ``LEDGER_HARNESS_PAUSE_AFTER=<n>`` (or ``all``) in its environment a worker stops dead
  after step n (or any step) of a run has committed: it blocks in a ledger subscriber, so a test
  can SIGKILL it at exactly that point. It prints ``PAUSED run=<id> step=<n>`` to stderr first.
  With ``claim`` it stops once a claim has committed, before the run's first action
  (``PAUSED run=<id> claimed``).
- ``python -m tests.ledger_harness start ...`` starts runs from a separate process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import col

from incidentbot import db, ledger
from incidentbot.ledger.actions import StepContext
from incidentbot.ledger.models import RUNNING, Run

REPO = Path(__file__).resolve().parent.parent

# In-process tests set this to let held or hung actions return at teardown.
RELEASE = threading.Event()


# -- the side-effect counter -------------------------------------------------------------------


@dataclass
class Hit:
    token: str
    dedupe: bool
    applied: bool
    status: int


@dataclass
class EffectServer:
    """Records each POST /effect {token, dedupe}; ``script`` makes chosen requests fail."""

    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    scripted: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    _httpd: ThreadingHTTPServer | None = None

    def start(self) -> EffectServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                status, headers, applied = server._record(body["token"], bool(body.get("dedupe")))
                payload = json.dumps({"applied": applied}).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/effect"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def script(self, token: str, *responses: tuple[int, dict[str, str]]) -> None:
        """The next requests for ``token`` get these (status, headers) instead of 200."""
        with self.lock:
            self.scripted.setdefault(token, []).extend(responses)

    def _record(self, token: str, dedupe: bool) -> tuple[int, dict[str, str], bool]:
        with self.lock:
            queue = self.scripted.get(token)
            if queue:
                status, headers = queue.pop(0)
                self.hits.append(Hit(token, dedupe, False, status))
                return status, headers, False
            done = any(h.applied for h in self.hits if h.token == token)
            applied = not (dedupe and done)
            self.hits.append(Hit(token, dedupe, applied, 200))
            return 200, {}, applied

    def requests(self) -> Counter[str]:
        with self.lock:
            return Counter(h.token for h in self.hits)

    def applied(self) -> Counter[str]:
        with self.lock:
            return Counter(h.token for h in self.hits if h.applied)


# -- actions -----------------------------------------------------------------------------------


_http: httpx.Client | None = None


def _client() -> httpx.Client:
    """One pooled client: building one per call (TLS context and all) would dominate."""
    global _http
    if _http is None:
        _http = httpx.Client(timeout=10)
    return _http


def _block(ctx: StepContext) -> None:
    """Block until the process dies, the worker gives up on the attempt, or RELEASE is set."""
    while not RELEASE.is_set() and not ctx.should_stop():
        time.sleep(0.02)


@ledger.action("harness.call")
def call(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """POST one side effect to the EffectServer; optionally hang or hold on a given attempt.

    ``hang_on_attempt``: block before sending (a hung call). ``hold_on_attempt``: block after
    the effect happened but before returning (the worker dies mid-step). ``hold_until``: after
    the effect, wait until that file exists (the test opens the gate when it is ready).
    """
    if data.get("hang_on_attempt") == ctx.attempt:
        _block(ctx)
        if ctx.should_stop():
            return {"abandoned": True}
    response = _client().post(
        data["url"],
        json={"token": data["token"], "dedupe": bool(data.get("dedupe"))},
        headers={"Idempotency-Key": ctx.idempotency_token},
    )
    response.raise_for_status()
    if data.get("hold_on_attempt") == ctx.attempt:
        _block(ctx)
    if data.get("hold_until"):
        gate, end = Path(data["hold_until"]), time.monotonic() + 60
        while not gate.exists() and time.monotonic() < end:
            time.sleep(0.02)
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    return {"applied": response.json()["applied"], "attempt": ctx.attempt}


def call_step(
    name: str, server_url: str, token: str, *, idempotent: bool = False, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "action": "harness.call",
        "idempotent": idempotent,
        "input": {"url": server_url, "token": token, "dedupe": idempotent, **extra},
    }


# -- pausing a worker at an exact point --------------------------------------------------------


def _install_pause(after_step: str) -> None:
    def pause(ev: ledger.LedgerEvent) -> None:
        if after_step == "claim" and ev.kind == "run.claimed":
            print(f"PAUSED run={ev.run_id} claimed", file=sys.stderr, flush=True)
            threading.Event().wait()  # until SIGKILL
        if ev.kind != "step.succeeded" or ev.step_index is None or after_step == "claim":
            return
        number = ev.step_index + 1
        if after_step == "all" or int(after_step) == number:
            print(f"PAUSED run={ev.run_id} step={number}", file=sys.stderr, flush=True)
            threading.Event().wait()  # until SIGKILL

    ledger.subscribe(pause)


if os.environ.get("LEDGER_HARNESS_PAUSE_AFTER"):
    _install_pause(os.environ["LEDGER_HARNESS_PAUSE_AFTER"])


# -- worker processes --------------------------------------------------------------------------


class WorkerProcess:
    """``incidentbot worker`` in a child process, with its log in a file."""

    def __init__(
        self,
        url: str,
        log_path: Path,
        *,
        name: str,
        lease: float = 1.5,
        threads: int = 1,
        pause_after: int | str | None = None,
        poll: float = 0.05,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
        env["INCIDENTBOT_DATABASE_URL"] = url
        env["PYTHONPATH"] = str(REPO)
        env.pop("LEDGER_HARNESS_PAUSE_AFTER", None)
        if pause_after is not None:
            env["LEDGER_HARNESS_PAUSE_AFTER"] = str(pause_after)
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from incidentbot.cli import main; sys.exit(main())",
             "worker", "--import", "tests.ledger_harness", "--threads", str(threads),
             "--lease", str(lease), "--poll", str(poll), "--name", name, "--grace", "10"],
            cwd=log_path.parent, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code


def expire_leases(engine_or_url: Any, owner_prefix: str) -> int:
    """End now the leases held by owners named ``owner_prefix...`` (call it once the process
    that held them is dead): what the clock would do one lease later, so a takeover need not
    wait for it, and tests can give workers a lease long enough that a busy machine never
    loses one by accident. Returns how many runs it touched."""
    engine = db.make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with db.transaction(engine) as s:
            now = db.db_now(s)
            result = s.execute(
                update(Run)
                .where(
                    col(Run.status) == RUNNING,
                    col(Run.owner).startswith(owner_prefix, autoescape=True),
                )
                .values(lease_expires_at=now - timedelta(seconds=1))
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def run_status(engine: Any, run_id: int) -> str:
    with db.transaction(engine) as s:
        return ledger.get_run(s, run_id).status


def wait_status(engine: Any, run_id: int, *statuses: str, timeout: float = 30.0) -> str:
    return wait_until(
        lambda: (st := run_status(engine, run_id)) in statuses and st,
        f"run {run_id} to be {' or '.join(statuses)}",
        timeout,
    )


def wait_until(
    check: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.02
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


# -- starting many runs (threads in the test process, or this module as a process) -------------


def start_all(
    url_or_engine: Any, items: Iterable[tuple[str, str]], server_url: str, *, timeout: float = 60
) -> int:
    """Start a one-call run for each (key, target), retrying while the target is locked.

    Returns how many times a start was refused by a lock (the contention the test wants).
    """
    engine = db.make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    pending = list(items)
    refusals = 0
    end = time.monotonic() + timeout
    while pending:
        if time.monotonic() > end:
            raise RuntimeError(f"{len(pending)} runs could not be started in {timeout}s")
        key, target = pending.pop(0)
        try:
            with db.transaction(engine) as s:
                ledger.start_run(
                    s, kind="stress", key=key, target=target, actor="test:starter",
                    steps=[call_step("call", server_url, key)],
                )  # fmt: skip
        except ledger.LockHeld:
            refusals += 1
            pending.append((key, target))
            time.sleep(0.02)
    if isinstance(url_or_engine, str):
        engine.dispose()
    return refusals


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.ledger_harness")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start runs from this process")
    start.add_argument("--url", required=True)
    start.add_argument("--server", required=True)
    start.add_argument("--items", required=True, help="JSON list of [key, target]")
    args = parser.parse_args(argv)
    items = [tuple(pair) for pair in json.loads(args.items)]
    import incidentbot.models  # noqa: F401 - every table, for the runs' foreign keys

    refusals = start_all(args.url, items, args.server)  # type: ignore[arg-type]
    print(json.dumps({"started": len(items), "refusals": refusals}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
