"""A clock tests move by hand: it runs at real speed from where it was set, plus whatever the
test added with ``advance`` (nothing sleeps until 09:00)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from incidentbot.clock import set_clock


class MovingClock:
    def __init__(self, at: datetime):
        self.set(at)

    def set(self, at: datetime) -> None:
        self._base, self._started = at, time.monotonic()

    def advance(self, delta: timedelta) -> datetime:
        self._base += delta
        return self()

    def __call__(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._started)


@contextmanager
def moving_clock(at: datetime) -> Iterator[MovingClock]:
    clock = MovingClock(at)
    set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(None)


def tick(bot) -> int:  # type: ignore[no-untyped-def]
    """One scheduler pass of the bot, as its scheduler thread makes them: fire what is due."""
    assert bot.scheduler is not None and bot.scheduler.try_lead()
    return int(bot.scheduler.tick())
