"""Run the benchmarks in bench/ and print one table: figure, baseline, ratio, target.

``bench/run`` calls this. Modules that define ``figures()`` (see :mod:`bench.figures`) give rows
of the table; the older ones, which print their own figures, run as they are and their output
follows the table. ``--record`` writes the table, the machine and the command into
docs/benchmarks.md (each module's section replaced, the others kept).

    bench/run                      # every benchmark
    bench/run storage_acks storage_history   # only these modules
    bench/run --record --rounds 5  # and record the results
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parents[1]))

from bench.figures import BenchArgs, BenchFailed, Figure

BENCH = Path(__file__).absolute().parent
RECORD = BENCH.parent / "docs" / "benchmarks.md"
NOT_BENCHMARKS = {"__init__", "figures", "runner", "served", "backends"}


def modules() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in NOT_BENCHMARKS)


def table(rows: list[tuple[str, Figure]]) -> list[str]:
    out = [
        "| benchmark | figure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for module, f in rows:
        target = f.target_text
        met = {True: "yes", False: "**no**", None: "-"}[f.met]
        base = f"{f.baseline:.1f} {f.unit}" + (f" ({f.baseline_name})" if f.baseline_name else "")
        name = f.name + (f" — {f.note}" if f.note else "")
        out.append(
            f"| {module} | {name} | {f.value:.1f} {f.unit} | {base} | {f.ratio:.2f}× "
            f"| {target} | {met} |"
        )
    return out


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else ""
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs {model}, "
        f"Python {platform.python_version()}"
    )


def record(by_module: dict[str, list[Figure]], command: str) -> None:
    text = RECORD.read_text(encoding="utf-8") if RECORD.exists() else _HEADER
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for module, figures in by_module.items():
        body = "\n".join(
            [
                f"<!-- bench:{module} -->",
                f"### {module}",
                "",
                f"{stamp} on {machine()}; command: `{command}`",
                "",
                *table([(module, f) for f in figures]),
                f"<!-- /bench:{module} -->",
            ]
        )
        pattern = re.compile(rf"<!-- bench:{module} -->.*?<!-- /bench:{module} -->", re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _m, new=body: new, text)
        else:
            text = f"{text}\n{body}\n"
    RECORD.write_text(text, encoding="utf-8")


_HEADER = """# Benchmarks

The last recorded results of `bench/run` (one section per benchmark module; `bench/run
--record` replaces the sections it ran). Every figure is a ratio against a baseline measured in
the same run on the same machine; absolute times on another machine will differ.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("only", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--record", action="store_true", help=f"write {RECORD.name}")
    args = parser.parse_args(argv)
    names = args.only or modules()
    unknown = sorted(set(names) - set(modules()))
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)} in bench/ (have {', '.join(modules())})")
    bench_args = BenchArgs(rounds=args.rounds, quick=args.quick)
    rows: list[tuple[str, Figure]] = []
    by_module: dict[str, list[Figure]] = {}
    printed: list[str] = []
    failed = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        began = time.monotonic()
        print(f"== {name}", flush=True)
        if hasattr(module, "figures"):
            try:
                figures = module.figures(bench_args)
            except Exception as exc:  # one broken benchmark must not lose the others' figures
                why = "" if isinstance(exc, BenchFailed) else f"{type(exc).__name__}: "
                print(f"   FAILED: {why}{exc}", flush=True)
                failed += 1
                continue
            rows.extend((name, f) for f in figures)
            by_module[name] = figures
        else:
            proc = subprocess.run(
                [sys.executable, str(BENCH / f"{name}.py")], capture_output=True, text=True
            )
            printed.append(f"== {name} (prints its own figures)\n{proc.stdout}{proc.stderr}")
            failed += proc.returncode != 0
        print(f"   {time.monotonic() - began:.0f} s", flush=True)
    print()
    print("\n".join(table(rows)))
    for block in printed:
        print()
        print(block.rstrip())
    if args.record and by_module:
        record(by_module, "bench/run " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
