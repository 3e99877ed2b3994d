"""Requests that must not grow with history.

An in-channel command (``sev``, ``note``, ``timeline``) on an incident with 10,000 timeline
events against the same on an incident with none; ``list`` with 10,000 open incidents against an
empty database and against one page of incidents, the same 10,000 spread over the four open
statuses against an empty database, and with 10,000 resolved incidents and one open (the
oldest) against an empty database. In-process (the command handler the Slack
listener calls), on SQLite and PostgreSQL (fsync on); the databases compared take turns, one
command each, so that the machine's load falls on them alike; each measured note is counted
stored, and every `list` reply is checked for what it must show (nothing on the empty
database; else the page's incidents, newest first, each with its title and channel link, as
declared incidents have one, and the line for the next page when there is one).

Run: bench/run storage_history
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).absolute().parents[1]))

from bench.backends import count, fresh_databases
from bench.figures import BenchArgs, BenchFailed, Figure, median
from incidentbot import db
from incidentbot.config import Settings
from incidentbot.ledger.actions import registry
from incidentbot.slack.commands import CommandHandler
from incidentbot.usecases.core import Core

HISTORY = 10_000
HISTORY_TARGET = 1.5  # × the same on an empty database
PAGE = 40  # incidents in one Slack `list` reply
LIST_REPEATS = 50  # `list`s per round, per database (a read of a millisecond or two)


def _seed(url: str, incidents: int, events_on_first: int) -> None:
    """``incidents`` open incidents, each in its channel (INC-n in Cn, as declared incidents
    are), INC-1 with ``events_on_first`` notes."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    try:
        _insert(engine, incidents, events_on_first)
        _settle(engine)
    finally:
        engine.dispose()


def _settle(engine: sa.Engine) -> None:
    """On PostgreSQL, what autovacuum does within a minute of such a change: the dead rows
    cleared and the planner's statistics gathered (a running bot's tables have both)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE incident")
        conn.exec_driver_sql("VACUUM ANALYZE timeline_event")


def _insert(engine: sa.Engine, incidents: int, events_on_first: int) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM counter WHERE name = 'incident'"))
        conn.execute(
            sa.text("INSERT INTO counter (name, value) VALUES ('incident', :n)"), {"n": incidents}
        )
        rows = [
            {
                "number": n, "title": f"seeded {n}", "severity": "SEV3", "status": "triage",
                "fields": "{}", "commander": "U1", "declared_by": "U1",
                "channel_id": f"C{n}", "at": now,
            }
            for n in range(1, incidents + 1)
        ]  # fmt: skip
        if not rows:
            return
        conn.execute(
            sa.text(
                "INSERT INTO incident (number, title, severity, status, fields, commander, "
                "declared_by, channel_id, created_at, updated_at, declared_at) VALUES "
                "(:number, :title, :severity, :status, :fields, :commander, :declared_by, "
                ":channel_id, :at, :at, :at)"
            ).bindparams(sa.bindparam("at", type_=db.UTCDateTime())),
            rows,
        )
        first = conn.execute(sa.text("SELECT id FROM incident WHERE number = 1")).scalar_one()
        events = [
            {"i": first, "at": now - timedelta(seconds=events_on_first - k), "s": f"event {k}"}
            for k in range(events_on_first)
        ]
        if events:
            conn.execute(
                sa.text(
                    "INSERT INTO timeline_event (incident_id, occurred_at, recorded_at, kind, "
                    "actor, summary, data) VALUES (:i, :at, :at, 'note', 'U1', :s, '{}')"
                ).bindparams(sa.bindparam("at", type_=db.UTCDateTime())),
                events,
            )


def _spread_over_the_open_statuses(url: str) -> None:
    """The open incidents in turn in each open status, as a team's would be (triage,
    investigating, identified, monitoring): the page merges four statuses, not one."""
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE incident SET status = CASE number % 4 WHEN 0 THEN 'triage'"
                    " WHEN 1 THEN 'investigating' WHEN 2 THEN 'identified' ELSE 'monitoring' END"
                )
            )
        _settle(engine)
    finally:
        engine.dispose()
    fewest = count(url, "SELECT count(*) FROM incident GROUP BY status ORDER BY 1 LIMIT 1")
    total = count(url, "SELECT count(*) FROM incident")
    if count(url, "SELECT count(DISTINCT status) FROM incident") != 4 or fewest < total // 4:
        raise BenchFailed("the open incidents are not spread evenly over four statuses")


def _resolve_all_but_the_first(url: str) -> None:
    """History: every incident but INC-1 resolved, so the one open is the oldest."""
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE incident SET status = 'resolved' WHERE number > 1"))
        _settle(engine)
    finally:
        engine.dispose()
    if count(url, "SELECT count(*) FROM incident WHERE status = 'triage'") != 1:
        raise BenchFailed("the history database does not have exactly one open incident")


def _time_commands(
    urls: list[str],
    texts: list[str],
    channel: str,
    repeats: int,
    shown: list[Callable[[str], bool]] | None = None,
) -> list[dict[str, float]]:
    """Median ms per command text on each database over ``repeats`` (after one warm-up).
    The databases take turns, one command each, so that the machine's load (shared, and
    swinging from second to second) falls on all of them alike and their ratios hold.
    ``shown``: per database, what every reply must show (else the figures are not of it)."""
    engines = [db.make_engine(url) for url in urls]
    handlers = [CommandHandler(Core(Settings(), engine)) for engine in engines]
    times: list[dict[str, list[float]]] = [{t: [] for t in texts} for _ in urls]
    checks = shown or [lambda _text: True for _ in urls]
    try:
        for text in texts:
            for k in range(repeats + 1):
                arg = text.format(sev=("2", "3")[k % 2], k=k)
                for handler, mine, check in zip(handlers, times, checks, strict=True):
                    t0 = time.perf_counter()
                    reply = handler.handle(
                        user_id="U1", channel_id=channel, text=arg, trigger_id="t"
                    )
                    if k:
                        mine[text].append(time.perf_counter() - t0)
                    if "Usage" in reply.text:
                        raise BenchFailed(f"`{arg}` was refused: {reply.text}")
                    if not check(reply.text):
                        raise BenchFailed(f"`{arg}` did not show what it should: {reply.text}")
        for url in urls:
            notes = count(url, "SELECT count(*) FROM timeline_event WHERE summary LIKE 'bench %'")
            if any("note" in t for t in texts) and notes != repeats + 1:
                raise BenchFailed(f"{notes} of {repeats + 1} notes stored")
    finally:
        for engine in engines:
            engine.dispose()
    return [{t: median(mine[t]) * 1000 for t in texts} for mine in times]


def _page(newest: int, *, more: bool, statuses: int = 1) -> Callable[[str], bool]:
    """What a `list` reply must show: a page of incidents (``PAGE``) from INC-``newest`` down,
    each with its title and channel, in ``statuses`` statuses, and the line for the next page
    if ``more``."""

    def check(text: str) -> bool:
        head, *shown = text.splitlines()
        if more != (len(shown) == PAGE + 1 and shown[-1].startswith("… and more")):
            return False
        lines = shown[:PAGE]
        numbers = range(newest, newest - PAGE, -1)
        states = [line.split(" · ")[1] if " · " in line else "" for line in lines]
        expected = [
            f"• *INC-{n}* SEV3 · {state} · seeded {n} · <#C{n}>"
            for n, state in zip(numbers, states, strict=True)
        ]
        return head == "*Open incidents*" and lines == expected and len(set(states)) == statuses

    return check


def _queue_only_chat_actions() -> None:
    """In-process, no worker runs the header and digest refreshes the commands queue; the
    actions they name must still be known for the runs to be recorded."""
    for name in ("chat.open_channel", "chat.furnish_channel", "chat.header", "chat.digest"):
        if registry.get(name) is None:
            registry.register(name, lambda *a, **k: None, idempotent=True)


def history(fresh, rounds: int, size: int) -> list[Figure]:  # type: ignore[no-untyped-def]
    _queue_only_chat_actions()
    figures: list[Figure] = []
    texts = ["sev {sev}", "note bench {k}", "timeline"]
    repeats = 10 * rounds
    for backend in fresh.backends:
        label, empty = fresh(backend)
        _seed(empty, 1, 0)
        _, full = fresh(backend)
        _seed(full, 1, size)
        base, big = _time_commands([empty, full], texts, "C1", repeats)
        for text in texts:
            figures.append(
                Figure(
                    f"`{text.split()[0]}` on an incident with {size:,} events, {label}",
                    big[text],
                    base[text],
                    target=HISTORY_TARGET,
                    baseline_name="no events",
                    note=f"median of {repeats}",
                )
            )
        urls = []
        for incidents in (0, PAGE, size, size, size + 1):
            _, url = fresh(backend)
            _seed(url, incidents, 0)
            urls.append(url)
        _spread_over_the_open_statuses(urls[3])
        _resolve_all_but_the_first(urls[4])
        shown = [
            lambda text: text == "No open incidents. :tada:",
            _page(PAGE, more=False),
            _page(size, more=True),
            _page(size, more=True, statuses=4),
            lambda text: text.splitlines()[1:] == ["• *INC-1* SEV3 · triage · seeded 1 · <#C1>"],
        ]
        listed = _time_commands(urls, ["list"], "D1", LIST_REPEATS * rounds, shown)
        timed = {n: found["list"] for n, found in zip((0, PAGE, size), listed[:3], strict=True)}
        for base, name in ((0, "empty database"), (PAGE, f"{PAGE} open incidents, one page")):
            figures.append(
                Figure(
                    f"`list` with {size:,} open incidents, {label}",
                    timed[size],
                    timed[base],
                    target=HISTORY_TARGET,
                    baseline_name=name,
                    note=f"median of {LIST_REPEATS * rounds}",
                )
            )
        figures.append(
            Figure(
                f"`list` with {size:,} open incidents in four statuses, {label}",
                listed[3]["list"],
                timed[0],
                target=HISTORY_TARGET,
                baseline_name="empty database",
                note=f"median of {LIST_REPEATS * rounds}",
            )
        )
        figures.append(
            Figure(
                f"`list` with {size:,} resolved incidents and one open (INC-1), {label}",
                listed[-1]["list"],
                timed[0],
                target=HISTORY_TARGET,
                baseline_name="empty database",
                note=f"median of {LIST_REPEATS * rounds}",
            )
        )
    return figures


def figures(args: BenchArgs) -> list[Figure]:
    with fresh_databases() as fresh:
        return history(fresh, args.rounds, 1_000 if args.quick else HISTORY)
