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
    """``value`` against ``baseline`` (same unit, same run). The target, if any: ``target``, the
    highest ratio that meets it; ``over``, at most that much more than the baseline, in the
    figure's unit (e.g. 2 ms over a bare write); ``under``, a bound on the value itself (e.g.
    under 300 ms). None of them: reported only. ``note`` says what was counted or what limits
    it."""

    name: str
    value: float
    baseline: float
    unit: str = "ms"
    target: float | None = None
    baseline_name: str = ""
    note: str = ""
    over: float | None = None
    under: float | None = None

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool | None:
        checks = []
        if self.target is not None:
            checks.append(self.ratio <= self.target)
        if self.over is not None:
            checks.append(self.value - self.baseline <= self.over)
        if self.under is not None:
            checks.append(self.value < self.under)
        return all(checks) if checks else None

    @property
    def target_text(self) -> str:
        """The target as the table prints it, rounded like the figures: ``≤ 1.5×``, ``at most
        2 ms over``, ``under 300 ms``, or ``-``."""
        parts = []
        if self.target is not None:
            parts.append(f"≤ {number(self.target)}×")
        if self.over is not None:
            parts.append(f"at most {number(self.over)} {self.unit} over")
        if self.under is not None:
            parts.append(f"under {number(self.under)} {self.unit}")
        return "; ".join(parts) or "-"


def number(value: float) -> str:
    """A figure's number as a reader takes it in: at most two decimals, no trailing zeros."""
    return f"{round(value, 2):g}"


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
