"""Waking a worker pool's idle workers one at a time."""

from __future__ import annotations

import threading
import time


class Wakeups:
    """Wake-ups for a pool's idle workers: each :meth:`set` wakes one waiting worker (a run was
    started, decided or released), not all of them; :meth:`set_all` wakes every one (stop).

    A woken worker claims runs until none is due, so one wake-up per new run is enough, and
    the others stay asleep instead of each making a claim transaction that finds nothing.
    Wake-ups given while no worker waits are kept, at most one per worker, for the next to
    wait. ``wait`` and ``clear`` have :class:`threading.Event`'s signature."""

    def __init__(self, workers: int = 1):
        self._cond = threading.Condition()
        self._tokens = 0
        self._limit = max(1, workers)
        self._all = False

    def set(self) -> None:
        with self._cond:
            self._tokens = min(self._tokens + 1, self._limit)
            self._cond.notify()

    def set_all(self) -> None:
        with self._cond:
            self._all = True
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """True once a wake-up is taken (or all were woken), False after ``timeout``. A waiter
        notified after another took the wake-up waits on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._tokens and not self._all:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            if not self._all:
                self._tokens -= 1
            return True

    def take(self) -> bool:
        """A worker that was not waiting claimed a run: the wake-up given for it, if any, is
        spent (the worker claims again after it, so a run is never left waiting on it). True
        if there was one: a run was started meanwhile, and the next claim is likely to find
        one."""
        with self._cond:
            if self._tokens:
                self._tokens -= 1
                return True
            return False

    def clear(self) -> None:
        """Nothing to do: :meth:`wait` takes its wake-up as it returns."""
