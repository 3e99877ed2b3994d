"""Workers: claim runs, execute their steps, keep their leases alive.

A :class:`Worker` is one thread's loop: claim a due run, drive it step by step until it ends,
parks, backs off or is lost, then claim the next. While it holds a run a heartbeat thread
renews the lease on the database clock. Attempts run in the worker's step thread (kept from one
step to the next) so that a hung call is abandoned at the step timeout instead of holding the
run (and the worker) forever: the abandoned thread is retired and the next step gets a new one.
:class:`WorkerPool` runs a few workers inside the bot process; ``incidentbot worker`` runs a
pool in a process of its own. While the process answers Slack (:mod:`incidentbot.priority`), a
worker waits a little before claiming or starting a step: the answers need the CPU first.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from sqlalchemy.engine import Engine

from incidentbot import priority
from incidentbot.db import transaction
from incidentbot.ledger import events
from incidentbot.ledger.actions import ActionRegistry, StepContext, Verdict, classify, registry
from incidentbot.ledger.attempts import (
    Attempt,
    Failed,
    Outcome,
    PrepareFailed,
    Succeeded,
    context_of,
    prepared_context,
)
from incidentbot.ledger.chained import Started, advance_and_start_next, chainable, claim_and_start
from incidentbot.ledger.leases import any_due
from incidentbot.ledger.service import LeaseLost
from incidentbot.ledger.spec import StepSpec
from incidentbot.ledger.threads import Heartbeat, StepThread
from incidentbot.ledger.transitions import begin_step, finish_step, release_held
from incidentbot.ledger.wakeups import Wakeups
from incidentbot.thread_stacks import where

log = logging.getLogger(__name__)

DEFAULT_LEASE = 30.0
DEFAULT_POLL = 0.5
# While this process answers Slack (3 s to answer), a claim or a step waits this long at most.
YIELD_TO_SLACK_S = 1.0


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Executes runs one at a time. Thread-safe to stop from another thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str | None = None,
        lease: float = DEFAULT_LEASE,
        poll: float = DEFAULT_POLL,
        actions: ActionRegistry = registry,
        stop: threading.Event | None = None,
        wake: threading.Event | Wakeups | None = None,
        only_run: int | None = None,
    ):
        if lease <= 0 or poll <= 0:
            raise ValueError("lease and poll must be positive")
        self.engine = engine
        self.owner = f"{name or default_name()}:{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.poll = poll
        self.actions = actions
        self.stop_event = stop or threading.Event()
        self.wake_event = wake or threading.Event()
        self.only_run = only_run  # work this run alone (the CLI following its own run)
        self.held: int | None = None
        self.seq = 0  # which hold ``held`` is, so a late heartbeat cannot spoil the next one
        self.lost = threading.Event()
        self._heartbeat: Heartbeat | None = None
        self._steps: StepThread | None = None

    # -- loop ----------------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Claim and drive runs until the stop event is set."""
        log.info("worker %s started (lease %.1fs)", self.owner, self.lease)
        # Whether the next claim is likely to find nothing, so that a read says first whether
        # anything is due: after a poll that no wake-up ended, or after a run when no wake-up
        # was waiting (a claim that finds nothing still takes the write turn).
        probe = False
        try:
            while not self.stop_event.is_set():
                try:
                    worked = self.run_once(probe=probe)
                except Exception:
                    # Typically the database is unreachable: any run this worker held is
                    # taken over once its lease expires; try again after a pause.
                    log.exception("worker %s: unexpected error; continuing", self.owner)
                    self.stop_event.wait(max(self.poll, 1.0))
                    continue
                if worked:
                    woken = isinstance(self.wake_event, Wakeups) and self.wake_event.take()
                    probe = not woken
                elif self.wake_event.wait(self.poll):
                    self.wake_event.clear()
                    probe = False
                else:
                    probe = True
        finally:
            self.close()
            log.info("worker %s stopped", self.owner)

    def run_once(self, *, probe: bool = False) -> bool:
        """Claim one due run and drive it as far as it goes now; False if none was due. With
        ``probe``, a read first says whether any run is due (:func:`leases.any_due`): a claim
        likely to find nothing then costs a read instead of a write transaction."""
        if probe and not any_due(self.engine, run_id=self.only_run):
            return False
        priority.after_urgent(YIELD_TO_SLACK_S)
        claimed = claim_and_start(
            self.engine, self.owner, self.lease, self.actions, self._prepare,
            only_run=self.only_run,
            may_start=lambda: not self.stop_event.is_set() and not priority.pending(),
        )  # fmt: skip
        if claimed is None:
            return False
        run_id, specs, first = claimed
        self.drive(run_id, specs, first)  # the claim read the spec: no step needs a read
        return True

    def drive(
        self,
        run_id: int,
        specs: dict[int, list[StepSpec]] | None = None,
        first: Started | None = None,
    ) -> None:
        """Execute steps of a run this worker has claimed until it need not any more
        (``first``: the step already started with the claim)."""
        self._ensure_heartbeat()
        self.seq += 1
        self.lost.clear()
        self.held = run_id
        specs = {} if specs is None else specs
        try:
            step = first if first is not None else self._begin(run_id, specs)
            while step is not None:
                attempt, ctx = step
                outcome = self.execute(attempt, ctx)
                if outcome is None:
                    log.warning(
                        "run %s: lease lost during step %s; abandoning it",
                        run_id,
                        attempt.index + 1,
                    )
                    return
                step = self._finish(run_id, specs, attempt, outcome)
        except LeaseLost:
            log.warning("run %s: %s no longer holds it; abandoning", run_id, self.owner)
        finally:
            self.held = None
            self.seq += 1

    def _begin(self, run_id: int, specs: dict[int, list[StepSpec]]) -> Started | None:
        """Mark the run's next step started in a commit of its own (or hand the run back on
        shutdown); None when no step is to run now."""
        if self.stop_event.is_set():
            with transaction(self.engine) as s:
                release_held(s, run_id, self.owner, self.lease)
            log.info("run %s released by %s on shutdown", run_id, self.owner)
            return None
        priority.after_urgent(YIELD_TO_SLACK_S)
        with transaction(self.engine) as s:
            attempt = begin_step(s, run_id, self.owner, self.lease, self.actions, specs)
            ctx = self._prepare(s, attempt) if attempt is not None else None
        if attempt is None or ctx is None:
            return None
        return attempt, ctx

    def _finish(
        self,
        run_id: int,
        specs: dict[int, list[StepSpec]],
        attempt: Attempt,
        outcome: Outcome,
    ) -> Started | None:
        """Record ``outcome`` and begin the next step: in one commit when the next step is a
        plain idempotent one (:mod:`incidentbot.ledger.chained`), else in two. Not while the
        worker is stopping, nor while this process answers Slack: then the outcome commits
        alone, and the next step waits for the answers in the clean state between the two."""
        cached = specs.get(run_id)
        if (
            cached is not None
            and isinstance(outcome, Succeeded)
            and chainable(attempt, cached, self.actions)
            and not self.stop_event.is_set()
            and not priority.pending()
        ):
            try:
                with transaction(self.engine) as s:
                    following = advance_and_start_next(
                        s, attempt, outcome, self.owner, self.lease, cached, self.actions
                    )
                    ctx = self._prepare(s, following) if following is not None else None
            except LeaseLost:
                raise
            except Exception:
                # Nothing of it committed (or, if the commit's answer was lost, all of it: the
                # next step is then found started and, being idempotent, run again).
                log.warning(
                    "run %s: recording step %s with the start of the next failed; "
                    "recording it alone",
                    run_id,
                    attempt.index + 1,
                    exc_info=True,
                )
            else:
                if following is not None and ctx is not None:
                    return following, ctx
                return self._begin(run_id, specs)
        with transaction(self.engine) as s:
            carry_on = finish_step(s, attempt, self.owner, self.lease, outcome)
        return self._begin(run_id, specs) if carry_on else None

    # -- one attempt ---------------------------------------------------------------------------

    def _prepare(self, session: Any, attempt: Attempt) -> StepContext:
        return prepared_context(session, attempt, self.actions)

    def execute(self, attempt: Attempt, ctx: StepContext | None = None) -> Outcome | None:
        """Run the action in the step thread with the step timeout; None if the lease was lost
        meanwhile (the result must then not be recorded by this worker)."""
        info = self.actions.get(attempt.action)
        ctx = ctx or context_of(attempt)
        if info is None:  # unregistered between begin_step and now
            return Failed(Verdict("permanent", f"no action {attempt.action!r}"))
        if isinstance(ctx.prepared, PrepareFailed):
            return self._failed(attempt, ctx.prepared.error)
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["result"] = info.fn(ctx, dict(attempt.input))
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        steps = self._step_thread()
        deadline = time.monotonic() + attempt.timeout
        steps.submit(call)
        while not done.wait(max(0.0, min(0.2, deadline - time.monotonic()))):
            if self.lost.is_set():
                ctx.stop_event.set()
                self._abandon(steps)
                return None
            if time.monotonic() >= deadline:
                ctx.stop_event.set()
                log.warning(
                    "run %s step %s timed out after %ss; it was waiting at:\n%s",
                    attempt.run_id, attempt.index + 1, attempt.timeout, where(steps),
                )  # fmt: skip
                self._abandon(steps)
                return Failed(Verdict("unknown", f"timed out after {attempt.timeout:g}s"))
        if self.lost.is_set():
            return None
        if "error" in box:
            return self._failed(attempt, box["error"])
        return Succeeded(box.get("result") or {})

    def _failed(self, attempt: Attempt, exc: BaseException) -> Failed:
        if isinstance(exc, Exception):
            verdict = classify(exc)
        else:  # SystemExit and the like, raised inside the action
            verdict = Verdict("permanent", f"the action raised {type(exc).__name__}")
        log.info(
            "run %s step %s attempt %s: %s (%s)", attempt.run_id, attempt.index + 1,
            attempt.attempt, verdict.message, verdict.kind,
        )  # fmt: skip
        return Failed(verdict)

    # -- lifecycle -----------------------------------------------------------------------------

    def _step_thread(self) -> StepThread:
        if self._steps is None or not self._steps.is_alive():
            self._steps = StepThread(f"{self.owner}-steps")
            self._steps.start()
        return self._steps

    def _abandon(self, steps: StepThread) -> None:
        """The call in ``steps`` is no longer waited for: the thread exits when it returns."""
        steps.retire()
        if self._steps is steps:
            self._steps = None

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._heartbeat = Heartbeat(self)
            self._heartbeat.start()

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.halt.set()
            self._heartbeat = None
        if self._steps is not None:
            self._steps.retire()
            self._steps = None


class WorkerPool:
    """A few workers in threads of this process (the bot runs one; so does ``incidentbot
    worker``). On SQLite use one pool per database; on PostgreSQL any number of processes."""

    def __init__(
        self,
        engine: Engine,
        *,
        threads: int = 2,
        lease: float = DEFAULT_LEASE,
        poll: float = DEFAULT_POLL,
        name: str | None = None,
        actions: ActionRegistry = registry,
        only_run: int | None = None,
    ):
        if threads < 1:
            raise ValueError("a pool needs at least one thread")
        self.stop_event = threading.Event()
        self.wake_event = Wakeups(threads)
        base = name or default_name()
        self.workers = [
            Worker(
                engine,
                name=f"{base}/{i + 1}",
                lease=lease,
                poll=poll,
                actions=actions,
                stop=self.stop_event,
                wake=self.wake_event,
                only_run=only_run,
            )
            for i in range(threads)
        ]
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Any = None

    def start(self) -> WorkerPool:
        if self._threads:
            raise RuntimeError("pool already started")
        # Runs started or decided in this process are picked up at once instead of at the
        # next poll; other processes' runs wait at most one poll interval.
        self._unsubscribe = events.subscribe(self._on_event)
        for worker in self.workers:
            thread = threading.Thread(target=worker.run_forever, name=worker.owner, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _on_event(self, ev: events.LedgerEvent) -> None:
        if ev.kind in ("run.created", "run.decided", "run.released"):
            self.wake()

    def wake(self) -> None:
        self.wake_event.set()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop claiming; let each worker finish its current step and hand its run back.
        Returns False if some worker was still inside a step when ``timeout`` ran out (its
        run is taken over by another worker once the lease expires)."""
        self.stop_event.set()
        self.wake_event.set_all()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
        stopped = not any(t.is_alive() for t in self._threads)
        if not stopped:
            log.warning("worker pool stopped with a step still running")
        return stopped

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
