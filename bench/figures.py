"""What a benchmark reports to ``bench/run``: figures, each with the baseline measured in the
same run, the ratio between them and the target it is held to.

A benchmark module joins the table by defining ``figures(args: BenchArgs) -> list[Figure]``.
It checks what it claims before it returns (counts what was stored; raises
:class:`BenchFailed` when the work it timed did not happen), and starts every repeat from the
same state.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


class BenchFailed(Exception):
    """The measured work did not do what the figure claims: no figure is reported."""


@dataclass(frozen=True)
class BenchArgs:
    rounds: int = 3
    quick: bool = False  # smaller sizes, for a smoke run of the runner itself


@dataclass(frozen=True)
class Figure:
    """``value`` against ``baseline`` (same unit, same run). ``target`` is the highest ratio
    that meets it (None: reported only); ``note`` says what was counted or what limits it."""

    name: str
    value: float
    baseline: float
    unit: str = "ms"
    target: float | None = None
    baseline_name: str = ""
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
