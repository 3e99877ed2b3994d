"""The threads around a worker: the heartbeat that keeps its lease alive and the step thread
that runs its actions (kept from one step to the next, retired when a call is abandoned)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from incidentbot.db import transaction
from incidentbot.ledger.leases import renew

if TYPE_CHECKING:
    from incidentbot.ledger.worker import Worker

log = logging.getLogger("incidentbot.ledger.worker")


class Heartbeat(threading.Thread):
    """Renews the lease of whatever run its worker holds, every third of the lease."""

    def __init__(self, worker: Worker):
        super().__init__(name=f"{worker.owner}-heartbeat", daemon=True)
        self.worker = worker
        self.halt = threading.Event()

    def run(self) -> None:
        interval = self.worker.lease / 3
        while not self.halt.wait(interval):
            run_id, seq = self.worker.held, self.worker.seq
            if run_id is None:
                continue
            try:
                with transaction(self.worker.engine) as s:
                    alive = renew(s, run_id, self.worker.owner, self.worker.lease)
            except Exception:
                log.warning("heartbeat for run %s failed; retrying", run_id, exc_info=True)
                continue
            # The worker may have finished with the run meanwhile (and even claimed it again):
            # only a failed renewal of the hold we read counts as a loss.
            if not alive and self.worker.seq == seq:
                log.warning("run %s: lease lost by %s", run_id, self.worker.owner)
                self.worker.lost.set()


class StepThread(threading.Thread):
    """One daemon thread that calls the worker's actions one after another.

    Starting a thread per step cost more than the ledger's own writes; this one waits for the
    next call instead. A call the worker abandoned (timeout, lease lost) may never return: the
    worker then retires this thread, which exits once that call does, and uses a new
    one, so a hung action never delays a later step.
    """

    _STOP = None

    def __init__(self, name: str):
        super().__init__(name=name, daemon=True)
        self.calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()

    def run(self) -> None:
        while (call := self.calls.get()) is not self._STOP:
            call()  # never raises: the call boxes its own outcome

    def submit(self, call: Callable[[], None]) -> None:
        self.calls.put(call)

    def retire(self) -> None:
        self.calls.put(self._STOP)
