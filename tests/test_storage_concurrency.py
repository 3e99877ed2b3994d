"""Storage under concurrency, on SQLite and PostgreSQL: reads do not wait behind a writer,
writers take turns in arrival order, concurrent declares are each recorded exactly once, refresh
runs stay one per change, and lists and timelines page without gaps or repeats."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text
from sqlmodel import col, select

from incidentbot import db, group_commit, inbound, inbound_answers, ledger, priority, writer_queue
from incidentbot.config import Settings
from incidentbot.incidents import effects
from incidentbot.incidents import service as svc
from incidentbot.incidents.listing import list_page
from incidentbot.incidents.models import Counter, Incident, TimelineEvent
from incidentbot.ledger.actions import registry
from incidentbot.ledger.models import Run
from incidentbot.slack.commands import CommandHandler
from incidentbot.slack.incident_commands import LIST_LIMIT, TIMELINE_LIMIT
from incidentbot.usecases.core import Core

GATE = 60.0  # seconds a gate waits before the test fails instead of hanging


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


@pytest.fixture(autouse=True)
def chat_actions() -> None:
    # The effects only queue runs here (no worker runs them); their actions must be known.
    for name in ("chat.open_channel", "chat.furnish_channel", "chat.header", "chat.digest"):
        if registry.get(name) is None:
            registry.register(name, _noop, idempotent=True)


def _threads(n: int, target: Callable[[int], None]) -> list[BaseException]:
    """Run ``target(i)`` in ``n`` threads released together; the exceptions they raised."""
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait(GATE)
            target(i)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(GATE * 2)
    assert not any(th.is_alive() for th in pool), "a thread never finished"
    return errors


def _declare(engine, settings: Settings, title: str, key: str | None = None) -> Incident:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        inc = svc.declare(s, settings, title=title, severity="3", actor="U1", idempotency_key=key)
        effects.start_declare_effects(s, inc, declarer="U1")
        return inc


# -- reads and writers -------------------------------------------------------------------------


def test_a_read_does_not_wait_behind_a_writer_holding_the_lock(engine, settings):
    _declare(engine, settings, "geth on rpc-1 is 40 blocks behind")
    with db.transaction(engine) as s:
        s.execute(text("UPDATE incident SET channel_id = 'C1' WHERE number = 1"))
    holding, release, read_done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def writer() -> None:
        with db.transaction(engine) as s:
            svc.declare(s, settings, title="second, not committed yet", severity="3", actor="U2")
            s.flush()  # the write lock (SQLite) is now held
            holding.set()
            release.wait(GATE)

    def reader() -> None:
        with db.read(engine) as s:
            found = svc.get_by_channel(s, "C1")
            seen["ref"] = found.ref if found else None
            seen["open"] = [i.ref for i in svc.list_incidents(s, settings)]
        read_done.set()

    w = threading.Thread(target=writer)
    w.start()
    try:
        assert holding.wait(GATE)
        r = threading.Thread(target=reader)
        r.start()
        # The writer is still inside its transaction (only this test releases it): the read
        # finished all the same, and saw the committed state only.
        assert read_done.wait(GATE), "the read waited for the writer"
        assert not release.is_set()
        assert seen == {"ref": "INC-1", "open": ["INC-1"]}
    finally:
        release.set()
        w.join(GATE)
    with db.read(engine) as s:
        assert [i.ref for i in svc.list_incidents(s, settings)] == ["INC-2", "INC-1"]


def test_a_read_session_refuses_to_write(engine, settings):
    with pytest.raises(RuntimeError, match="cannot write"), db.read(engine) as s:
        s.add(Counter(name="nope", value=1))
    with db.read(engine) as s:
        assert s.get(Counter, "nope") is None


def test_writers_take_their_turn_in_the_order_they_asked():
    queue = writer_queue.WriterQueue("test")
    assert queue.acquire()
    order: list[int] = []
    queued = [threading.Event() for _ in range(4)]

    def writer(i: int) -> None:
        assert queue.acquire(GATE)
        order.append(i)
        queue.release()

    pool = []
    for i in range(4):
        th = threading.Thread(target=writer, args=(i,))
        th.start()
        pool.append(th)
        # Each writer is in the queue before the next one asks.
        while queue.waiting() < i + 1:
            queued[i].wait(0.001)
    assert order == []  # nobody writes while the lock is held
    assert queue.acquire()  # the holder's own thread does not wait for itself
    queue.release()
    queue.release()
    for th in pool:
        th.join(GATE)
    assert order == [0, 1, 2, 3]


# -- exactly once -----------------------------------------------------------------------------


def test_concurrent_declares_are_each_recorded_exactly_once(engine, settings):
    n = 16
    errors = _threads(n, lambda i: _declare(engine, settings, f"node {i} lagging", f"k{i}"))
    assert errors == []
    # A retry of one of them (same key) finds the incident and its runs: nothing new.
    again = _declare(engine, settings, "node 3 lagging", "k3")
    with db.read(engine) as s:
        incidents = list(s.exec(select(Incident).order_by(col(Incident.number))))
        declared = list(
            s.exec(select(TimelineEvent).where(TimelineEvent.kind == "incident.declared"))
        )
        runs = list(s.exec(select(Run)))
    assert [i.number for i in incidents] == list(range(1, n + 1))  # no gap, no repeat
    assert sorted(i.title for i in incidents) == sorted(f"node {i} lagging" for i in range(n))
    assert again.number == next(i.number for i in incidents if i.idempotency_key == "k3")
    assert sorted(e.incident_id for e in declared) == sorted(i.id for i in incidents)
    keys = sorted(r.idempotency_key for r in runs)
    assert keys == sorted(
        f"INC-{i}:{what}" for i in range(1, n + 1) for what in ("channel", "refresh:declared")
    )


def test_refresh_runs_stay_one_per_change_under_concurrency(engine, settings):
    inc = _declare(engine, settings, "beacon node out of sync")
    n = 12

    def change(i: int) -> None:
        with db.transaction(engine) as s:
            svc.add_note(s, settings, inc.ref, f"note {i}", actor=f"U{i}")
            effects.refresh(s, svc.get(s, inc.ref), actor=f"U{i}", reason="note")

    assert _threads(n, change) == []
    with db.read(engine) as s:
        keys = sorted(
            s.exec(
                select(Run.idempotency_key).where(
                    Run.incident_id == inc.id, Run.kind == "incident.refresh"
                )
            )
        )
        counter = s.get(Counter, svc.refresh_counter(inc))
    expected = [f"{inc.ref}:refresh:{k}" for k in [*range(1, n + 1), "declared"]]
    assert keys == sorted(expected)
    assert counter is not None and counter.value == n


# -- pages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("listing", [svc.list_incidents, list_page])
def test_list_pages_cover_every_open_incident_once(engine, settings, listing):
    for i in range(9):
        _declare(engine, settings, f"validator {i} missed attestations")
    for ref in ("INC-2", "INC-5"):
        with db.transaction(engine) as s:
            svc.resolve(s, settings, ref, "restarted", actor="U1")
    for ref, status in (
        ("INC-3", "investigating"),
        ("INC-7", "investigating"),
        ("INC-8", "monitoring"),
    ):
        with db.transaction(engine) as s:
            svc.set_status(s, settings, ref, status, actor="U1")
    pages: list[list[str]] = []
    before = None
    while True:
        with db.read(engine) as s:
            page = listing(s, settings, limit=3, before=before)
        if not page:
            break
        pages.append([i.ref for i in page])
        before = page[-1].number
    assert pages == [["INC-9", "INC-8", "INC-7"], ["INC-6", "INC-4", "INC-3"], ["INC-1"]]


def test_list_reads_only_open_incidents_however_many_were_resolved(engine, settings):
    """Years of resolved incidents: the page of open ones is read off the status index, a few
    rows per open status, not by walking back past every resolved incident."""
    for i in range(6):
        _declare(engine, settings, f"validator {i} missed attestations")
    with db.transaction(engine) as s:
        for ref in ("INC-2", "INC-3", "INC-4", "INC-6"):
            svc.resolve(s, settings, ref, "restarted", actor="U1")
        svc.set_status(s, settings, "INC-5", "investigating", actor="U1")
    seen: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        seen.append((statement, parameters))

    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        with db.read(engine) as s:
            page = list_page(s, settings, limit=40)
            everything = list_page(s, settings, limit=40, include_terminal=True)
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    assert [(i.ref, i.status) for i in page] == [("INC-5", "investigating"), ("INC-1", "triage")]
    assert [i.ref for i in everything] == [f"INC-{n}" for n in range(6, 0, -1)]
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if postgres:
            conn.exec_driver_sql("SET enable_seqscan = off")  # a small table: judge the index
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        plans = [
            " ".join(str(row) for row in conn.exec_driver_sql(explain + statement, parameters))
            for statement, parameters in seen
            if "FROM incident" in statement and "ORDER BY" in statement
        ]
    assert plans and all("ix_incident_list" in plan for plan in plans), plans
    assert not any("uq_incident_number" in plan for plan in plans), plans


def test_the_list_index_goes_and_comes_back_with_its_migrations(engine):
    """0023 widens the (status, number) index of 0022 into the list's covering index; going
    back restores the narrow one, then none."""

    def indexes() -> set[str]:
        return {ix["name"] for ix in sa_inspect(engine).get_indexes("incident")}

    def columns(name: str) -> list[str]:
        [ix] = [ix for ix in sa_inspect(engine).get_indexes("incident") if ix["name"] == name]
        return list(ix["column_names"])

    listed = ["status", "number", "severity", "title", "channel_id", "private"]
    assert "ix_incident_status_number" not in indexes() and columns("ix_incident_list") == listed
    db.downgrade(engine, "0022")
    assert "ix_incident_list" not in indexes()
    assert columns("ix_incident_status_number") == ["status", "number"]
    db.downgrade(engine, "0021")
    assert not indexes() & {"ix_incident_list", "ix_incident_status_number"}
    db.upgrade(engine)
    assert "ix_incident_status_number" not in indexes() and columns("ix_incident_list") == listed


def test_timeline_pages_back_through_ties_without_gaps(engine, settings):
    inc = _declare(engine, settings, "RPC p99 above 2s")
    at = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    with db.transaction(engine) as s:
        for i in range(25):  # many at the same instant: the id breaks the tie
            svc.add_note(s, settings, inc.ref, f"step {i}", actor="U1", now=at, occurred_at=at)
    with db.read(engine) as s:
        whole = [e.id for e in svc.timeline(s, inc)]
        seen: list[int] = []
        before = None
        while True:
            events, more = svc.latest(s, inc, 7, before=before)
            seen[:0] = [e.id for e in events]
            if not more:
                break
            before = (events[0].occurred_at, events[0].id)
    assert seen == whole and len(whole) > 3 * 7  # four pages


def test_slack_list_and_timeline_show_the_latest_and_say_there_is_more(engine, settings):
    for i in range(LIST_LIMIT + 2):
        with db.transaction(engine) as s:
            svc.declare(s, settings, title=f"incident {i}", severity="3", actor="U1")
    with db.transaction(engine) as s:
        s.execute(text("UPDATE incident SET channel_id = 'C9' WHERE number = 1"))
        for i in range(TIMELINE_LIMIT + 5):
            svc.add_note(s, settings, "INC-1", f"finding {i}", actor="U1")
    handler = CommandHandler(Core(settings, engine))

    listed = handler.handle(user_id="U1", channel_id="D1", text="list", trigger_id="t1").text
    assert listed.count("• *INC-") == LIST_LIMIT
    assert f"*INC-{LIST_LIMIT + 2}*" in listed and "*INC-2*" not in listed
    assert "incidentbot incident list --before 3" in listed

    shown = handler.handle(user_id="U1", channel_id="C9", text="timeline", trigger_id="t2")
    body = str(shown.blocks)
    assert f"finding {TIMELINE_LIMIT + 4}" in body and "finding 4" not in body
    assert f"the latest {TIMELINE_LIMIT}" in body
    assert "incidentbot incident timeline INC-1" in body


def test_the_upgrade_starts_each_refresh_counter_past_every_key_used(engine, settings):
    old = _declare(engine, settings, "RPC p99 above 2s")  # 2 events; its refresh key ":2"
    quiet = _declare(engine, settings, "disk filling on archive-1")
    with db.transaction(engine) as s:
        ledger.start_run(
            s,
            kind="incident.refresh",
            key=f"{old.ref}:refresh:7",
            steps=[{"name": "Update the incident header", "action": "chat.header"}],
            incident_id=old.id,
            actor="U1",
        )
        for i in range(3):
            svc.add_note(s, settings, quiet.ref, f"note {i}", actor="U1")
    with db.read(engine) as s:
        quiet_events = len(svc.timeline(s, quiet))
    # Back to an incidentbot that keyed refreshes by the timeline length (no counters), with
    # those rows in place; the upgrade must start each counter past every key they used.
    db.downgrade(engine, "0014")
    db.upgrade(engine)
    with db.transaction(engine) as s:
        effects.refresh(s, svc.get(s, old.ref), actor="U1", reason="note")
        effects.refresh(s, svc.get(s, quiet.ref), actor="U1", reason="note")
    with db.read(engine) as s:
        keys = set(s.exec(select(Run.idempotency_key).where(Run.kind == "incident.refresh")))
    assert f"{old.ref}:refresh:8" in keys  # past the largest key used, not the timeline
    assert f"{quiet.ref}:refresh:{quiet_events + 1}" in keys


def test_cli_list_pages_with_a_hint_for_the_next_page(cli):
    for title in ("geth behind", "lighthouse stuck", "haproxy flapping"):
        assert cli("incident", "declare", title)[0] == 0
    code, out, _ = cli("incident", "list", "--limit", "2")
    assert code == 0
    assert "INC-3" in out and "INC-2" in out and "INC-1" not in out
    assert "More: incidentbot incident list --before 2" in out
    code, out, _ = cli("incident", "list", "--limit", "2", "--before", "2")
    assert code == 0
    assert "INC-1" in out and "INC-2" not in out and "More:" not in out


def test_cli_list_shows_titles_as_typed_never_as_markup(cli, engine, settings):
    typed = "[/x] [bold]geth[/bold] behind on [red]rpc-2"
    _declare(engine, settings, typed)  # declared in Slack, listed in a terminal
    code, out, err = cli("incident", "list")
    assert code == 0, err
    assert typed in out


# -- group commit -----------------------------------------------------------------------------


def _titles(engine) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    with db.read(engine) as s:
        return [
            (i.number, i.title) for i in s.exec(select(Incident).order_by(col(Incident.number)))
        ]


def _next_after_lost(engine, lost: int) -> int:  # type: ignore[no-untyped-def]
    """The first incident's number after ``lost`` declares that took a number and failed."""
    return 1 if engine.dialect.name == "sqlite" else lost + 1


def _queue_behind(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    """Return once ``n`` writers wait for their turn behind the holder."""
    group = db.writers(engine)
    assert group is not None
    seen = threading.Event()
    while group.queue.waiting() < n:
        seen.wait(0.001)


@pytest.fixture
def grouped(database_url, monkeypatch):  # type: ignore[no-untyped-def]
    """An engine that commits in groups (the default on SQLite; PostgreSQL opts in)."""
    # The group may grow as long as writers wait, however slowly this machine lets them in.
    monkeypatch.setattr(group_commit, "WINDOW_S", 3600.0)
    eng = db.make_engine(database_url, grouped=True)
    try:
        yield eng
    finally:
        eng.dispose()


def test_a_group_commits_once_and_a_failing_member_undoes_only_its_own_work(grouped, settings):
    """Four declares queue behind each other and commit as one group. The third fails after
    writing: its incident is gone (its INC number too on SQLite), the others are stored, and each
    caller returns only once its incident is committed (a fresh reader sees it)."""
    holding, release_first = threading.Event(), threading.Event()
    last_inside, release_last = threading.Event(), threading.Event()
    returned: dict[str, list[tuple[int, str]]] = {}
    failed: dict[str, BaseException] = {}
    commits: list[int] = []

    def counted(conn: Any) -> None:
        if conn.get_execution_options().get(group_commit.GROUP_OPTION):  # not the readers'
            commits.append(1)

    sa_event.listen(grouped, "commit", counted)

    def member(title: str, before_commit: Callable[[], None] | None = None) -> None:
        try:
            with db.transaction(grouped) as s:
                svc.declare(s, settings, title=title, severity="3", actor="U1")
                s.flush()
                if before_commit is not None:
                    before_commit()
            returned[title] = _titles(grouped)  # what a fresh reader sees on return
        except BaseException as exc:
            failed[title] = exc

    def first_waits() -> None:
        holding.set()
        assert release_first.wait(GATE)

    def third_fails() -> None:
        raise RuntimeError("the pager policy refused this one")

    def last_waits() -> None:
        last_inside.set()
        assert release_last.wait(GATE)

    threads = [threading.Thread(target=member, args=("first", first_waits))]
    threads[0].start()
    assert holding.wait(GATE)
    for i, (title, hook) in enumerate(
        (("second", None), ("third", third_fails), ("last", last_waits))
    ):
        threads.append(threading.Thread(target=member, args=(title, hook)))
        threads[-1].start()
        _queue_behind(grouped, i + 1)
    commits.clear()
    release_first.set()
    try:
        assert last_inside.wait(GATE)
        # The first three have run; the first two wait for the group's commit, unstored.
        assert _titles(grouped) == []
        assert returned == {} and commits == []
        assert set(failed) == {"third"}
    finally:
        release_last.set()
        for th in threads:
            th.join(GATE)
    assert commits == [1]  # one COMMIT for the whole group
    assert isinstance(failed.pop("third"), RuntimeError) and failed == {}
    # SQLite: no gap where the third one failed. PostgreSQL: its number stays unused (the
    # sequence is not rolled back; docs/storage.md), never given to another.
    last = 3 if grouped.dialect.name == "sqlite" else 4
    stored = [(1, "first"), (2, "second"), (last, "last")]
    assert _titles(grouped) == stored
    for title in ("first", "second", "last"):
        assert (next(n for n, t in stored if t == title), title) in returned[title]


def test_a_callback_after_the_group_commit_may_write_at_once(grouped, settings, monkeypatch):
    """What runs after a group's commit (a ledger event's hook) may write while other writers
    queue: it takes its turn like any writer and never waits for a group that could only be
    committed by a writer stuck behind the turn its own thread still holds."""
    # Without the queue's time limit, such a wait would hang instead of ending after 30 s.
    monkeypatch.setattr(writer_queue.WriterQueue.acquire, "__defaults__", (3600.0,))
    writers = db.writers(grouped)
    assert writers is not None
    written, other_done = threading.Event(), threading.Event()

    def other_writer() -> None:
        _declare(grouped, settings, "another writer")
        other_done.set()

    def hook() -> None:
        # Another writer arrives while the hook runs; the hook writes once it is in line (or,
        # when the turn was free, already done).
        threading.Thread(target=other_writer, daemon=True).start()
        idle = threading.Event()
        while not (other_done.is_set() or writers.queue.waiting() >= 1):
            idle.wait(0.001)
        _declare(grouped, settings, "written after the commit")
        written.set()

    def member() -> None:
        with db.transaction(grouped) as s:
            svc.declare(s, settings, title="the member", severity="3", actor="U1")
            s.flush()
            assert group_commit.after_commit(s, hook)

    th = threading.Thread(target=member, daemon=True)
    th.start()
    assert written.wait(GATE), "the callback's write waited on its own thread's turn"
    assert other_done.wait(GATE)
    th.join(GATE)
    titles = sorted(t for _n, t in _titles(grouped))
    assert titles == ["another writer", "the member", "written after the commit"]


def test_a_writer_of_another_engine_on_the_same_database_never_joins_a_group(
    sqlite_template, tmp_path, settings, monkeypatch
):
    """Two engines of one process write to one SQLite file (a command line run in the bot's
    process, a second installation): they share the file's writers' turns, but a group is one
    engine's connection, so its holder commits before the other engine's writer takes the turn
    instead of leaving SQLite's lock held for a member that will never come. (On PostgreSQL
    each engine has turns of its own and the database's row locks order them.)"""
    monkeypatch.setattr(group_commit, "WINDOW_S", 3600.0)
    path = tmp_path / "incidentbot.db"
    shutil.copyfile(sqlite_template, path)
    grouped = db.make_engine(f"sqlite:///{path}", grouped=True)
    other = db.make_engine(f"sqlite:///{path}", grouped=True)
    holding, release = threading.Event(), threading.Event()
    failed: dict[str, BaseException] = {}

    def member(engine, title: str, hold: bool = False) -> None:  # type: ignore[no-untyped-def]
        try:
            with db.transaction(engine) as s:
                svc.declare(s, settings, title=title, severity="3", actor="U1")
                s.flush()
                if hold:
                    holding.set()
                    assert release.wait(GATE)
        except BaseException as exc:
            failed[title] = exc

    try:
        first = threading.Thread(target=member, args=(grouped, "in a group", True))
        first.start()
        assert holding.wait(GATE)
        second = threading.Thread(target=member, args=(other, "through another engine"))
        second.start()
        _queue_behind(grouped, 1)
        release.set()
        first.join(GATE)
        second.join(GATE)
        assert failed == {}
        assert sorted(t for _n, t in _titles(grouped)) == ["in a group", "through another engine"]
    finally:
        release.set()
        other.dispose()
        grouped.dispose()


def test_when_the_group_commit_fails_no_member_is_stored_and_each_is_told(grouped, settings):
    holding, release_first = threading.Event(), threading.Event()
    failed: dict[str, BaseException] = {}

    def member(title: str, hold: bool = False) -> None:
        try:
            with db.transaction(grouped) as s:
                svc.declare(s, settings, title=title, severity="3", actor="U1")
                if hold:
                    holding.set()
                    assert release_first.wait(GATE)
        except BaseException as exc:
            failed[title] = exc

    def refuse(_conn: Any) -> None:
        raise OSError("disk full")

    threads = [threading.Thread(target=member, args=("first", True))]
    threads[0].start()
    assert holding.wait(GATE)
    threads.append(threading.Thread(target=member, args=("second",)))
    threads[-1].start()
    _queue_behind(grouped, 1)
    sa_event.listen(grouped, "commit", refuse)
    release_first.set()
    for th in threads:
        th.join(GATE)
    sa_event.remove(grouped, "commit", refuse)
    assert set(failed) == {"first", "second"}
    assert all(isinstance(e, group_commit.CommitFailed) for e in failed.values())
    assert _titles(grouped) == []
    _declare(grouped, settings, "after the failed commit")
    # The two lost numbers are given back on SQLite, left unused on PostgreSQL.
    assert _titles(grouped) == [(_next_after_lost(grouped, 2), "after the failed commit")]


CRASH_IN_A_GROUP = """
import os, sys, threading
from incidentbot import db, group_commit
from incidentbot.config import Settings
from incidentbot.incidents import service as svc

group_commit.WINDOW_S = 3600.0  # the group waits for the second member however slow it is
engine = db.make_engine(sys.argv[1], grouped=True)
settings = Settings(data_dir=sys.argv[2])
group = db.writers(engine)
kill = threading.Event()

def second():
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="second", severity="3", actor="U1")
        s.flush()
        print("second inside, first waiting for the commit", flush=True)
        os._exit(9)

with db.transaction(engine) as s:
    svc.declare(s, settings, title="first", severity="3", actor="U1")
    threading.Thread(target=second).start()
    while group.queue.waiting() < 1:
        kill.wait(0.001)
print("first returned", flush=True)
"""


def test_a_process_that_dies_mid_group_has_stored_none_of_it(
    grouped, settings, database_url, tmp_path
):
    script = tmp_path / "crash_in_a_group.py"
    script.write_text(CRASH_IN_A_GROUP)
    done = subprocess.run(
        [sys.executable, str(script), database_url, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=GATE,
    )
    assert done.returncode == 9, done.stderr
    assert "second inside" in done.stdout and "first returned" not in done.stdout
    assert _titles(grouped) == []
    _declare(grouped, settings, "after the crash")
    assert _titles(grouped) == [(_next_after_lost(grouped, 2), "after the crash")]


def test_an_answer_stored_after_it_was_sent_is_what_a_replay_gets(engine):
    answers = inbound_answers.Finishes(engine)
    key, other = "slack:trigger:1.2.abc", "slack:trigger:1.2.def"
    answer = inbound.Answer(200, "application/json", '{"text": "Declared INC-1"}')
    assert inbound.claim(engine, key).outcome == "run"
    assert inbound.claim(engine, other).outcome == "run"
    answers.add(key, answer)
    queued, held = answers.pending(key)
    assert held == (answer if queued else None)  # from memory until it is stored
    answers.close()  # stores what is queued
    assert answers.pending(key) == (False, None)
    assert inbound.claim(engine, key) == inbound.Claim("answered", answer)
    assert inbound.claim(engine, other).outcome == "running"  # never answered: still running


def test_a_request_claimed_by_many_at_once_runs_once(engine):
    """The same signed request arriving twenty times at once (replicas, Slack's retries): one
    claim runs it, every other is told it is running; a claim taken over after the first died
    runs again, once."""
    outcomes: list[str] = []
    errors = _threads(
        20, lambda _i: outcomes.append(inbound.claim(engine, "slack:trigger:x").outcome)
    )
    assert errors == []
    assert sorted(outcomes) == ["run"] + ["running"] * 19
    with db.transaction(engine) as s:  # its process died long ago, before it answered
        s.execute(
            text("UPDATE inbound_request SET claimed_at = :at WHERE key = 'slack:trigger:x'"),
            {"at": datetime(2020, 1, 1, tzinfo=UTC).replace(tzinfo=None)},
        )
    outcomes.clear()
    errors = _threads(
        8, lambda _i: outcomes.append(inbound.claim(engine, "slack:trigger:x").outcome)
    )
    assert errors == []
    assert sorted(outcomes) == ["run"] + ["running"] * 7


def test_claims_older_than_a_signature_lives_are_forgotten(engine, monkeypatch):
    monkeypatch.setattr(inbound, "PRUNE_EVERY", 1)  # prune at every new claim
    assert inbound.claim(engine, "slack:trigger:old").outcome == "run"
    with db.transaction(engine) as s:  # claimed long before a signature stops being accepted
        s.execute(
            text("UPDATE inbound_request SET claimed_at = :at WHERE key = 'slack:trigger:old'"),
            {"at": datetime(2020, 1, 1, tzinfo=UTC).replace(tzinfo=None)},
        )
    assert inbound.claim(engine, "slack:trigger:new").outcome == "run"
    with db.read(engine) as s:
        keys = s.execute(text("SELECT key FROM inbound_request ORDER BY key")).scalars().all()
    assert keys == ["slack:trigger:new"]


# -- Slack's answers first ----------------------------------------------------------------------


def answering(order: list[str]) -> tuple[threading.Thread, threading.Event]:
    """A thread answering a Slack request until the returned event is set (then it appends
    "answered" to ``order``); returns once the answer is under way."""
    inside, release = threading.Event(), threading.Event()

    def answer() -> None:
        with priority.urgent():
            inside.set()
            assert release.wait(GATE)
            order.append("answered")

    slack = threading.Thread(target=answer)
    slack.start()
    assert inside.wait(GATE)
    return slack, release


def test_work_that_can_wait_goes_after_the_slack_answers_being_sent():
    order: list[str] = []
    seen = threading.Event()

    def alerts() -> None:
        priority.after_urgent(GATE)
        order.append("alerts ingested")

    priority.after_urgent(GATE)  # nothing being answered: no wait at all
    slack, release = answering(order)
    storm = threading.Thread(target=alerts)
    storm.start()
    while priority.deferred() < 1:
        seen.wait(0.001)
    priority.after_urgent(0.0)  # the wait is bounded: it never stops what can wait for good
    assert order == []
    release.set()
    for th in (slack, storm):
        th.join(GATE)
    assert order == ["answered", "alerts ingested"]


def test_a_ledger_worker_claims_its_run_only_after_the_slack_answer_being_sent(engine):
    with db.transaction(engine) as s:
        rid = ledger.start_run(
            s, kind="wait", key="after-slack", actor="test",
            steps=[{"name": "noop", "action": "ledger.noop"}],
        ).id  # fmt: skip
    order: list[str] = []
    seen = threading.Event()

    def work() -> None:
        worker = ledger.Worker(engine, name="after-slack", lease=30)
        try:
            assert worker.run_once()
            order.append("run done")
        finally:
            worker.close()

    slack, release = answering(order)
    worker = threading.Thread(target=work)
    worker.start()
    for _ in range(int(GATE * 1000)):  # the worker waits for the answer (fails, not hangs)
        if priority.deferred() >= 1 or not worker.is_alive():
            break
        seen.wait(0.001)
    assert priority.deferred() == 1, order
    with db.read(engine) as s:
        assert ledger.get_run(s, rid).status == "pending"  # not even claimed while answering
    release.set()
    for th in (slack, worker):
        th.join(GATE)
    assert order == ["answered", "run done"]
    with db.read(engine) as s:
        assert ledger.get_run(s, rid).status == "succeeded"


def test_writers_answering_slack_go_first_and_the_others_wait_only_so_long(monkeypatch):
    """In the write queue, writers answering a Slack request pass the ones that can wait (a
    ledger worker, alert ingest); a writer that has waited PRIORITY_LIMIT_S goes next anyway.
    The queue's clock is a counter moved by the test."""
    now = [1000.0]
    monkeypatch.setattr(writer_queue, "_clock", lambda: now[0])
    queue = writer_queue.WriterQueue("test")
    assert queue.acquire()
    order: list[str] = []
    seen = threading.Event()

    def writer(name: str, urgent: bool) -> None:
        if urgent:
            with priority.urgent():
                assert queue.acquire(GATE)
        else:
            assert queue.acquire(GATE)
        order.append(name)
        queue.release()

    def queue_up(name: str, urgent: bool) -> threading.Thread:
        th = threading.Thread(target=writer, args=(name, urgent))
        waiting = queue.waiting()
        th.start()
        while queue.waiting() < waiting + 1:  # in line before the next one asks
            seen.wait(0.001)
        return th

    threads = [
        queue_up("worker 1", False),
        queue_up("declare 1", True),
        queue_up("worker 2", False),
        queue_up("declare 2", True),
    ]
    queue.release()
    for th in threads:
        th.join(GATE)
    assert order == ["declare 1", "declare 2", "worker 1", "worker 2"]

    # Waited its limit: the worker goes before the declare that asked after it.
    order.clear()
    assert queue.acquire()
    threads = [queue_up("worker 3", False), queue_up("declare 3", True)]
    now[0] += writer_queue.PRIORITY_LIMIT_S
    queue.release()
    for th in threads:
        th.join(GATE)
    assert order == ["worker 3", "declare 3"]
