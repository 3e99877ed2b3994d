"""Redaction cost on timeline-sized text: 10,000 lines, mostly ordinary, some secret-shaped.

The lines are the mix an incident's timeline and a runbook's output carry: notes, status
updates, log lines with block and transaction hashes, addresses and URLs, and one line in
twenty from the secret corpus. Prints the best time to mask every line one call at a time
(how the timeline, Slack and the log filter call it) and the whole text in one call (a step's
output). ``--module`` also times another copy of the redaction module (e.g. an older version
saved with ``git show <commit>:incidentbot/ledger/redact.py``), interleaved, and prints the
ratio. No assertions.

    .venv/bin/python bench/redaction.py [--lines 10000] [--repeat 5] [--module old_redact.py]
"""

from __future__ import annotations

import argparse
import importlib.util
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


def best_seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--module", help="another redaction module file to compare with")
    args = parser.parse_args()
    contenders = {"incidentbot.ledger.redact": load(None)}
    if args.module:
        contenders[args.module] = load(args.module)
    text = lines(args.lines)
    whole = "\n".join(text)
    per_line: dict[str, list[float]] = {name: [] for name in contenders}
    at_once: dict[str, list[float]] = {name: [] for name in contenders}
    for redact_text in contenders.values():
        redact_text(whole)  # warm up: compiled patterns, the BIP39 list
    # Interleaved, so that a busy machine slows every contender alike.
    for _ in range(args.repeat):
        for name, redact_text in contenders.items():
            per_line[name].append(best_seconds(lambda f=redact_text: [f(t) for t in text]))
            at_once[name].append(best_seconds(lambda f=redact_text: f(whole)))
    print(f"lines: {len(text)}, characters: {len(whole)}; best of {args.repeat}")
    for name in contenders:
        line, once = min(per_line[name]), min(at_once[name])
        print(
            f"{name}: one call per line {line * 1000:.1f} ms ({line / len(text) * 1e6:.1f} µs/line)"
        )
        print(f"{name}: one call for the whole text {once * 1000:.1f} ms")
    if args.module:
        ours, theirs = "incidentbot.ledger.redact", args.module
        line_ratio = min(per_line[ours]) / min(per_line[theirs])
        once_ratio = min(at_once[ours]) / min(at_once[theirs])
        print(f"ratio to {theirs}: per line {line_ratio:.2f}, whole text {once_ratio:.2f}")
    redact_text = contenders["incidentbot.ledger.redact"]
    for hostile in HOSTILE:
        took = best_seconds(lambda h=hostile: redact_text(h))
        print(f"hostile {hostile[:12]!r}… ({len(hostile)} characters): {took * 1000:.1f} ms")


if __name__ == "__main__":
    main()
