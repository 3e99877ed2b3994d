"""Redaction cost on timeline-sized text: 10,000 lines, mostly ordinary, some secret-shaped.

The lines are the mix an incident's timeline and a runbook's output carry: notes, status
updates, log lines with block and transaction hashes, addresses and URLs, and one line in
twenty from the secret corpus. Prints the median time to mask every line one call at a time
(how the timeline, Slack and the log filter call it) and the whole text in one call (a step's
output). ``--module`` times another copy of the redaction module (e.g. an older version saved
from git) for a before/after ratio. No assertions.

    .venv/bin/python bench/redaction.py [--lines 10000] [--repeat 5] [--module old_redact.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.secret_corpus import ADDRESS, BLOCK_HASH, HOSTILE, LOOKALIKES, SECRETS, TX_HASH

ORDINARY = (
    "rpc-{i} head {n} blocks behind; peers {p}",
    "Still degraded on rpc-{i}; next update in {p} minutes",
    "geth on rpc-{i} logs: 'Imported new chain segment' number={n} hash=" + BLOCK_HASH,
    "tx " + TX_HASH + " stuck with nonce {n}, from " + ADDRESS,
    "failed over to rpc-{i} via https://grafana.example.com/d/rpc?var-node=rpc-{i}&from=now-6h",
    "Bob Lee acknowledged PagerDuty #{n} (rpc)",
    "validator {n} missed {p} attestations in epoch {n}",
)


def lines(count: int) -> list[str]:
    secret = [text for _, text, _ in SECRETS] + [text for _, text in LOOKALIKES]
    out: list[str] = []
    for i in range(count):
        if i % 20 == 19:
            out.append(secret[i // 20 % len(secret)].replace("\n", " "))
        else:
            out.append(ORDINARY[i % len(ORDINARY)].format(i=i % 9, n=19_000_000 + i, p=i % 50))
    return out


def load(path: str | None) -> Callable[[str], str]:
    if path is None:
        from incidentbot.ledger.redact import redact_text

        return redact_text
    spec = importlib.util.spec_from_file_location("redact_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.redact_text


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--module", help="a redaction module file to time instead")
    args = parser.parse_args()
    redact_text = load(args.module)
    text = lines(args.lines)
    whole = "\n".join(text)
    redact_text(whole)  # warm up: compiled patterns, the BIP39 list
    per_line = median_seconds(lambda: [redact_text(t) for t in text], args.repeat)
    at_once = median_seconds(lambda: redact_text(whole), args.repeat)
    print(f"module: {args.module or 'incidentbot.ledger.redact'}")
    print(f"lines: {len(text)}, characters: {len(whole)}")
    print(f"one call per line: {per_line * 1000:.1f} ms ({per_line / len(text) * 1e6:.1f} µs/line)")
    print(f"one call for the whole text: {at_once * 1000:.1f} ms")
    for text in HOSTILE:
        took = median_seconds(lambda text=text: redact_text(text), 1)
        print(f"hostile {text[:12]!r}… ({len(text)} characters): {took * 1000:.1f} ms")


if __name__ == "__main__":
    main()
