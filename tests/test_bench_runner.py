"""The table `bench/run` prints and records: targets read like the figures beside them."""

from __future__ import annotations

import pytest

from bench import runner
from bench.figures import Figure


def _row(figure: Figure) -> list[str]:
    header, rule, row = runner.table([("ledger_overhead", figure)])
    assert header.startswith("| benchmark |") and rule.startswith("|---")
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_a_target_computed_from_the_baseline_prints_rounded():
    cells = _row(Figure("SQLite: ledger step", 1.3, 0.2261, target=1 + 2 / 0.2261))
    assert cells[4:] == ["5.75×", "≤ 9.85×", "yes"]


@pytest.mark.parametrize(
    ("value", "met"),
    [(2.6, "yes"), (2.84, "**no**")],
)
def test_a_target_over_the_baseline_says_how_much_over(value, met):
    cells = _row(Figure("PostgreSQL: ledger step", value, 0.8, over=2, note="x ms over"))
    assert cells[5:] == ["at most 2 ms over", met]


def test_an_absolute_bound_prints_as_one_and_decides_met():
    under = Figure("10,000 events, md", 264.0, 47.0, under=300.0)
    above = Figure("10,000 events, md", 312.5, 47.0, under=300.0)
    assert _row(under)[5:] == ["under 300 ms", "yes"]
    assert _row(above)[5:] == ["under 300 ms", "**no**"]
    assert _row(Figure("reported only", 1.0, 2.0))[5:] == ["-", "-"]


def test_recording_replaces_only_the_sections_run(tmp_path, monkeypatch):
    record = tmp_path / "benchmarks.md"
    record.write_text(
        "# Benchmarks\n\n<!-- bench:ledger_overhead -->\nold\n<!-- /bench:ledger_overhead -->\n"
        "\n<!-- bench:other -->\nkept\n<!-- /bench:other -->\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(runner, "RECORD", record)
    runner.record({"ledger_overhead": [Figure("step", 2.84, 0.8, over=2)]}, "bench/run x")
    text = record.read_text(encoding="utf-8")
    assert "old" not in text and "kept" in text
    assert "| at most 2 ms over | **no** |" in text and "command: `bench/run x`" in text
