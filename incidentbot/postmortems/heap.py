"""Building a long postmortem without the cycle collector walking the heap meanwhile.

A document of 10,000 events creates tens of thousands of small objects that live until it is
rendered (events, entries, rows). Each allocation counts toward the collector's thresholds,
so building one set off a full collection of everything the process holds (in a CLI, every
imported module; tens of milliseconds, a third of the render's CPU), and none of those
objects is part of a reference cycle: they are freed by their reference counts as soon as
the document is. :func:`collector_paused` holds the collector off while a document is built
and rendered; it collects as usual afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold automatic cyclic collection off for the block. The collector is process-wide:
    if it was already off (a caller of ours, another thread in such a block), it is left as
    found; only the block that turned it off turns it on again."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
