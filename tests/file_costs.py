"""Longest test files first: what each file costs, and the order in which they are handed out.

``scripts/test`` runs the suite in a few processes with ``--dist loadfile``: a file is the unit
of scheduling, and a process takes the next file from a queue whenever it runs low. A file that
starts last and runs long finishes the suite alone while the other processes are idle, so the
queue starts with the files that cost most (pytest-xdist's own order is by number of tests,
which puts a few long end-to-end tests behind hundreds of quick ones).

``tests/file_costs.json`` holds the seconds each slow file took (setup, call and teardown of
all its tests, as run in one process of the suite). A file without an entry is estimated from
its number of tests. ``pytest --record-file-costs`` refreshes the entries of the files it ran.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

COSTS = Path(__file__).with_name("file_costs.json")
PER_TEST = 0.2  # seconds: a file without a recorded cost is estimated at this much per test
NOT_RECORDED = ("conftest.py",)


def load(path: Path = COSTS) -> dict[str, float]:
    """File name → seconds."""
    found = json.loads(path.read_text())
    return {str(name): float(seconds) for name, seconds in found["seconds"].items()}


def unit_costs(
    units: dict[str, list[str]], costs: dict[str, float], per_test: float = PER_TEST
) -> dict[str, float]:
    """What each unit of scheduling costs: the recorded seconds of its files, or an estimate
    from its number of tests for a file never recorded. ``units`` maps a unit to the file
    name of each of its tests."""
    found: dict[str, float] = {}
    for unit, files in units.items():
        tests_per_file: dict[str, int] = defaultdict(int)
        for name in files:
            tests_per_file[name] += 1
        found[unit] = sum(
            costs.get(name, per_test * count) for name, count in tests_per_file.items()
        )
    return found


def order_longest_first(
    items: list[pytest.Item], unit_of: Callable[[pytest.Item], str], costs: dict[str, float]
) -> None:
    """Reorder ``items`` in place: whole units, the costliest first; within a unit (and between
    units of equal cost) the order is kept."""
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(unit_of(item), []).append(item)
    cost = unit_costs({u: [i.path.name for i in its] for u, its in units.items()}, costs)
    ranked = sorted(units, key=lambda unit: -cost[unit])  # stable: ties keep their order
    items[:] = [item for unit in ranked for item in units[unit]]


class Recorder:
    """``--record-file-costs``: adds up each file's test durations as their reports come in
    (in the controlling process under xdist) and, at the end, updates ``tests/file_costs.json``
    for the files that ran, every test of them passing."""

    def __init__(self, path: Path = COSTS):
        self.path = path
        self.seconds: dict[str, float] = defaultdict(float)
        self.failed: set[str] = set()

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = Path(report.nodeid.split("::", 1)[0]).name
        if name in NOT_RECORDED:
            return
        self.seconds[name] += report.duration
        if report.failed:
            self.failed.add(name)

    @pytest.hookimpl
    def pytest_sessionfinish(self) -> None:
        costs = load(self.path) if self.path.exists() else {}
        costs.update(record(self.seconds, self.failed))
        write(self.path, costs)


def record(seconds: dict[str, float], failed: Iterable[str]) -> dict[str, float]:
    """The entries to keep: one per file that ran and passed, to a tenth of a second."""
    skip = set(failed)
    return {name: round(total, 1) for name, total in seconds.items() if name not in skip}


def write(path: Path, costs: dict[str, float]) -> None:
    ranked = dict(sorted(costs.items(), key=lambda kv: (-kv[1], kv[0])))
    text = json.dumps({"seconds": ranked}, indent=1) + "\n"
    path.write_text(text)
