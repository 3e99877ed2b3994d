"""The order in which the suite's processes take the test files: longest first, by the costs
recorded in tests/file_costs.json (files never recorded estimated by their number of tests)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests import consensus_support, file_costs

HERE = Path(__file__).resolve().parent


def items(*names: str) -> list[Any]:
    """Stand-ins for collected tests: one per name, the file it is in."""
    return [SimpleNamespace(path=HERE / name, nodeid=f"tests/{name}::t{n}") for n, name in
            enumerate(names)]  # fmt: skip


def files(ordered: list[Any]) -> list[str]:
    return [item.path.name for item in ordered]


def by_file(item: Any) -> str:
    return str(item.path)


def test_the_costliest_file_goes_first_and_each_file_stays_whole():
    queue = items("test_a.py", "test_a.py", "test_b.py", "test_c.py", "test_c.py")
    file_costs.order_longest_first(queue, by_file, {"test_b.py": 300.0, "test_c.py": 20.0})
    assert files(queue) == ["test_b.py", "test_c.py", "test_c.py", "test_a.py", "test_a.py"]
    assert [item.nodeid for item in queue[1:3]] == ["tests/test_c.py::t3", "tests/test_c.py::t4"]


def test_a_file_never_recorded_is_estimated_by_its_number_of_tests():
    many = ["test_many.py"] * 200  # 200 quick tests: more than a 30 s file, less than 120 s
    assert 30.0 < 200 * file_costs.PER_TEST < 120.0
    queue = items("test_short.py", *many, "test_long.py")
    costs = {"test_short.py": 30.0, "test_long.py": 120.0}
    file_costs.order_longest_first(queue, by_file, costs)
    assert files(queue) == ["test_long.py", *many, "test_short.py"]


def test_files_of_equal_cost_keep_their_order():
    queue = items("test_z.py", "test_y.py", "test_x.py")
    file_costs.order_longest_first(queue, by_file, {})
    assert files(queue) == ["test_z.py", "test_y.py", "test_x.py"]


def test_the_consensus_lab_files_go_together_at_the_cost_of_all_of_them():
    lab = consensus_support.FILES
    queue = items("test_big.py", *lab)

    def unit(item: Any) -> str:
        return consensus_support.SCOPE if item.path.name in lab else by_file(item)

    # Each lab file alone is cheaper than the big one; together they cost more.
    costs = {"test_big.py": 250.0, **{name: 240.0 / len(lab) + 10.0 for name in lab}}
    file_costs.order_longest_first(queue, unit, costs)
    assert files(queue) == [*lab, "test_big.py"]


def test_recorded_costs_are_written_longest_first_and_read_back(tmp_path):
    path = tmp_path / "file_costs.json"
    file_costs.write(path, {"test_old.py": 12.0})
    recorder = file_costs.Recorder(path)
    for nodeid, duration, outcome in [
        ("tests/test_a.py::one", 1.25, "passed"),
        ("tests/test_a.py::two", 2.5, "passed"),
        ("tests/test_b.py::one", 30.0, "passed"),
        ("tests/test_broken.py::one", 99.0, "failed"),
        ("tests/test_broken.py::two", 1.0, "passed"),
    ]:
        report = SimpleNamespace(nodeid=nodeid, duration=duration, failed=outcome == "failed")
        recorder.pytest_runtest_logreport(report)  # type: ignore[arg-type]
    recorder.pytest_sessionfinish()
    # a failed file is not recorded (its time says nothing); earlier entries are kept
    assert file_costs.load(path) == {"test_b.py": 30.0, "test_old.py": 12.0, "test_a.py": 3.8}
    assert list(file_costs.load(path)) == ["test_b.py", "test_old.py", "test_a.py"]


def test_every_recorded_file_is_a_test_file_of_the_suite():
    """A file renamed or split must not keep its old cost (its parts would be estimated)."""
    recorded = file_costs.load()
    assert recorded, "tests/file_costs.json has no entries"
    missing = sorted(name for name in recorded if not (HERE / name).is_file())
    assert missing == []
