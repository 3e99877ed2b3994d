"""Postmortem render time for an incident with 10,000 timeline events, Markdown and HTML.

The incident is the realistic SEV1 of the postmortem tests (tests/postmortem_scenario.py: pages,
pins, status updates, severity changes, a failed and a successful runbook run with their steps,
action items, written sections), topped up to the number of events asked for with the same mix
of entries people make: notes, pinned messages, status updates, page acknowledgements. For
each back end, prints the median time to read everything (``document.build``) and to render
each format (build + template), and the output sizes. No assertions.

    .venv/bin/python bench/postmortem_render.py [--events 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends import each_backend
from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import TimelineEvent
from incidentbot.postmortems.document import build
from incidentbot.postmortems.render import render_document
from tests.postmortem_scenario import (
    build_incident,
    controlled_clock,
    effect_server,
    scenario_settings,
)

MIX = (
    ("note", "U01DANA", "rpc-{i} head {n} blocks behind; peers {p}"),
    (
        "timeline.pinned",
        "U01BOB",
        "<@U01DANA> geth on rpc-{i} logs: 'Imported new chain segment' x{n}",
    ),
    ("status.update", "U01ALICE", "Still degraded on rpc-{i}; next update in {p} minutes"),
    ("page.acknowledged", "Bob Lee", "Bob Lee acknowledged PagerDuty #{n} (rpc)"),
)


def top_up(engine, ref: str, events: int) -> int:
    """Add events (after the resolve, one second apart) until the timeline has ``events``."""
    with db.transaction(engine) as s:
        inc = svc.get(s, ref)
        have = len(svc.timeline(s, inc))
        start = inc.resolved_at or inc.declared_at
        for i in range(max(0, events - have)):
            kind, actor, text = MIX[i % len(MIX)]
            at = start + timedelta(seconds=i + 1)
            s.add(
                TimelineEvent(
                    incident_id=inc.id,  # type: ignore[arg-type]
                    occurred_at=at,
                    recorded_at=at,
                    kind=kind,
                    actor=actor,
                    summary=text.format(i=i % 7 + 1, n=1000 + i, p=i % 50),
                    data={},
                )
            )
    with db.transaction(engine) as s:
        return len(svc.timeline(s, svc.get(s, ref)))


def measure(name: str, url: str, events: int, repeat: int) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    try:
        with tempfile.TemporaryDirectory() as tmp, effect_server() as srv:
            with controlled_clock() as clock:
                settings = scenario_settings(Path(tmp), srv.url)
                sc = build_incident(engine, settings, clock)
            total = top_up(engine, sc.ref, events)
            reads: list[float] = []
            times: dict[str, list[float]] = {"md": [], "html": []}
            sizes: dict[str, int] = {}
            for _ in range(repeat):
                for fmt in ("md", "html"):
                    started = time.perf_counter()
                    with db.transaction(engine) as s:
                        doc = build(s, settings, svc.get(s, sc.ref))
                    read = time.perf_counter() - started
                    text = render_document(settings, doc, fmt)
                    times[fmt].append(time.perf_counter() - started)
                    reads.append(read)
                    sizes[fmt] = len(text.encode())
    finally:
        engine.dispose()
    print(f"{name:<11} {total:,} timeline events, median of {repeat}:")
    print(f"  read (document.build)   {statistics.median(reads) * 1000:8.0f} ms")
    for fmt in ("md", "html"):
        median = statistics.median(times[fmt]) * 1000
        print(f"  render {fmt:<4} (total)      {median:8.0f} ms   {sizes[fmt] / 1024:8.0f} KiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    each_backend(lambda name, url: measure(name, url, args.events, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
