"""Postmortem render time for an incident with 10,000 timeline events, Markdown and HTML.

The incident is the realistic SEV1 of the postmortem tests (tests/postmortem_scenario.py: pages,
pins, status updates, severity changes, a failed and a successful runbook run with their steps,
action items, written sections), topped up to the number of events asked for with the same mix
of entries people make: notes, pinned messages, status updates, page acknowledgements.

Each figure is one format on one back end: the median time to read everything and render the
document (``document.build`` + the template), against the floor measured in the same run: one
raw SQL read of the timeline's rows, each formatted as a line of the same format and escaped
once (no renderer can do less). The target is absolute: under 0.3 s (``TARGET_S``); the ratio
to the floor says how much the document adds to reading its rows. Each figure's note also gives
the median CPU time the render took in this process: on a loaded machine the wall time swings
several-fold, the CPU time much less (PostgreSQL's own work is in its server, not counted).

    bench/run postmortem_render
    .venv/bin/python bench/postmortem_render.py [--events 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from markupsafe import escape

from bench.backends import each_backend
from bench.figures import BenchArgs, BenchFailed, Figure
from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import TimelineEvent
from incidentbot.postmortems.document import build
from incidentbot.postmortems.render import md, render_document
from tests.postmortem_scenario import (
    build_incident,
    controlled_clock,
    effect_server,
    scenario_settings,
)

EVENTS = 10_000
TARGET_S = 0.3
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


def top_up(engine: sa.Engine, ref: str, events: int) -> int:
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


def floor(engine: sa.Engine, incident_id: int, fmt: str) -> int:
    """Read the timeline's rows with one raw query and write each as one escaped line."""
    sql = sa.text(
        "SELECT occurred_at, actor, summary FROM timeline_event "
        "WHERE incident_id = :id ORDER BY occurred_at, id"
    )
    with engine.connect() as c:
        rows = c.execute(sql, {"id": incident_id}).all()
    if fmt == "md":
        text = "\n".join(f"- **{at}** {md(who)} · {md(what)}" for at, who, what in rows)
    else:
        text = "\n".join(
            f"<tr><td>{at}</td><td>{escape(who)}</td><td>{escape(what)}</td></tr>"
            for at, who, what in rows
        )
    return len(text)


Times = tuple[list[float], list[float], list[float]]  # render (wall), floor (wall), render CPU


def measure(url: str, events: int, rounds: int) -> dict[str, Times]:
    """Per format: the render times, the floor times and the render's CPU time (this
    process's: on a loaded machine it moves far less than the wall time), ``rounds`` each,
    interleaved."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    out: dict[str, Times] = {"md": ([], [], []), "html": ([], [], [])}
    try:
        with tempfile.TemporaryDirectory() as tmp, effect_server() as srv:
            with controlled_clock() as clock:
                settings = scenario_settings(Path(tmp), srv.url)
                sc = build_incident(engine, settings, clock)
            total = top_up(engine, sc.ref, events)
            if total < events:
                raise BenchFailed(f"the timeline has {total} events, not {events}")
            with db.transaction(engine) as s:
                incident_id = svc.get(s, sc.ref).id
            assert incident_id is not None
            for _ in range(rounds):
                for fmt in ("md", "html"):
                    started = time.perf_counter()
                    floor(engine, incident_id, fmt)
                    out[fmt][1].append(time.perf_counter() - started)
                    started, cpu = time.perf_counter(), time.process_time()
                    with db.transaction(engine) as s:
                        doc = build(s, settings, svc.get(s, sc.ref))
                    text = render_document(settings, doc, fmt)
                    out[fmt][0].append(time.perf_counter() - started)
                    out[fmt][2].append(time.process_time() - cpu)
                    if doc.event_count != total or "Action items" not in text:
                        raise BenchFailed(f"the {fmt} document is not the incident's")
    finally:
        engine.dispose()
    return out


def figures(args: BenchArgs) -> list[Figure]:
    events = 1_000 if args.quick else EVENTS
    found: list[Figure] = []

    def one(name: str, url: str) -> None:
        measured = measure(url, events, args.rounds)
        load = os.getloadavg()[0]  # the machine's, over the last minute of measuring
        for fmt, (times, floors, cpus) in measured.items():
            value = statistics.median(times) * 1000
            cpu = statistics.median(cpus) * 1000
            found.append(
                Figure(
                    f"{name}: {events:,} events, {fmt} (build + render)",
                    value,
                    statistics.median(floors) * 1000,
                    under=TARGET_S * 1000,
                    baseline_name="raw read + one escaped line per event",
                    note=f"CPU {cpu:.0f} ms in this process; load average {load:.1f}",
                )
            )

    each_backend(one)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    def one(name: str, url: str) -> None:
        for fmt, (times, floors, cpus) in measure(url, args.events, args.rounds).items():
            print(
                f"{name:<11} {args.events:,} events {fmt:<4}: render "
                f"{statistics.median(times) * 1000:6.0f} ms (CPU "
                f"{statistics.median(cpus) * 1000:4.0f} ms), floor "
                f"{statistics.median(floors) * 1000:6.0f} ms"
            )

    each_backend(one)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
