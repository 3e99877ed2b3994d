"""The incident list (Slack ``list``, the CLI ``incident list``), on SQLite and PostgreSQL:
the same rows and order as the full query, one statement with or without incidents, and a
page read off the status index however much history the planner has learned about."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, text
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.incidents.listing import list_page, list_rows
from incidentbot.policy_models import Status
from incidentbot.slack.commands import CommandHandler
from incidentbot.usecases.core import Core


def _insert(
    engine: Engine,
    statuses: dict[int, str],
    *,
    private: set[int] = frozenset(),  # type: ignore[assignment]
    titles: dict[int, str] | None = None,
) -> None:
    """Incidents numbered as the keys, in those statuses (written as a database from before a
    status was renamed would hold them: no use case sets a status the settings do not know),
    titled as ``titles`` says (else with markup to escape)."""
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    titled = titles or {}
    rows = [
        {"number": n, "title": titled.get(n, f"<!here> node {n} & peers"), "status": status,
         "channel_id": f"C{n}" if n % 2 else None, "private": True if n in private else None}
        for n, status in statuses.items()
    ]  # fmt: skip
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO incident (number, title, severity, status, fields, declared_by,"
                " channel_id, private, created_at, updated_at, declared_at) VALUES (:number,"
                " :title, 'SEV2', :status, '{}', 'U1', :channel_id, :private, :at, :at, :at)"
            ).bindparams(bindparam("at", value=now, type_=db.UTCDateTime())),
            rows,
        )


@contextmanager
def _statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        if statement not in ("BEGIN", "COMMIT"):
            seen.append((statement, parameters))

    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)


def test_the_page_is_the_full_querys_rows_in_its_order_whatever_the_statuses(engine, settings):
    """Open, terminal and no-longer-configured statuses ("paused"), private and public: every
    page, with and without terminal incidents, is the ORM query's, page after page."""
    statuses = ["triage", "investigating", "resolved", "monitoring", "paused", "closed"]
    _insert(engine, {n: statuses[n % 6] for n in range(1, 31)}, private={4, 5})
    for include_terminal in (False, True):
        for limit in (1, 4, 40):
            before = None
            while True:
                with db.read(engine) as s:
                    page = list_page(
                        s, settings, limit=limit, before=before, include_terminal=include_terminal
                    )
                    expected = svc.list_incidents(
                        s, settings, limit=limit, before=before, include_terminal=include_terminal
                    )
                    rows = list_rows(s, settings, limit=limit, before=before)
                if not include_terminal:  # Slack's list: the same rows as the driver read them
                    assert [(*r[:5], True if r[5] else None) for r in rows] == page
                assert [(i.number, i.status, i.title, i.channel_id) for i in page] == [
                    (i.number, i.status, i.title, i.channel_id) for i in expected
                ]
                assert [i.private for i in page] == [i.private for i in expected]
                assert all(i.private in (True, None) for i in page)
                if not page:
                    break
                before = page[-1].number
    with db.read(engine) as s:
        shown = {i.number for i in list_page(s, settings, limit=40)}
    assert {4, 10, 16} <= shown  # "paused": no longer configured, still open
    assert not shown & {2, 5, 8, 11}  # resolved or closed


def test_slack_list_shows_an_incident_in_a_status_no_longer_configured(engine, settings):
    """Each line as people read it: the title escaped, the channel linked, a private
    incident's title and channel not shown."""
    _insert(engine, {1: "triage", 2: "paused", 3: "investigating", 4: "resolved"}, private={1})
    reply = CommandHandler(Core(settings, engine)).handle(
        user_id="U1", channel_id="D1", text="list", trigger_id="t1"
    )
    assert reply.text.splitlines() == [
        "*Open incidents*",
        "• *INC-3* SEV2 · investigating · &lt;!here&gt; node 3 &amp; peers · <#C3>",
        "• *INC-2* SEV2 · paused · &lt;!here&gt; node 2 &amp; peers",
        "• *INC-1* SEV2 · triage · :lock: _private_",
    ]


def test_slack_list_escapes_a_title_among_titles_that_need_nothing(engine, settings):
    """A page of titles with nothing to escape shows them as typed (any script); one title
    with markup on the page is escaped, and only it."""
    titles = {1: "disk full on node-1", 2: "RPC latency café ☕ · 2s", 3: "sync stalled"}
    _insert(engine, {1: "triage", 2: "investigating", 3: "triage"}, titles=titles)
    handler = CommandHandler(Core(settings, engine))

    def shown() -> list[str]:
        said = handler.handle(user_id="U1", channel_id="D1", text="list", trigger_id="t")
        return said.text.splitlines()

    assert shown() == [
        "*Open incidents*",
        "• *INC-3* SEV2 · triage · sync stalled · <#C3>",
        "• *INC-2* SEV2 · investigating · RPC latency café ☕ · 2s",
        "• *INC-1* SEV2 · triage · disk full on node-1 · <#C1>",
    ]
    _insert(engine, {4: "monitoring"}, titles={4: "<@U9> & <!channel> <#C1|ops>"})
    assert shown() == [
        "*Open incidents*",
        "• *INC-4* SEV2 · monitoring · &lt;@U9&gt; &amp; &lt;!channel&gt; &lt;#C1|ops&gt;",
        "• *INC-3* SEV2 · triage · sync stalled · <#C3>",
        "• *INC-2* SEV2 · investigating · RPC latency café ☕ · 2s",
        "• *INC-1* SEV2 · triage · disk full on node-1 · <#C1>",
    ]


def test_an_empty_database_runs_the_same_one_statement(engine, settings):
    """The list costs one statement whether there is anything to show or not: the statuses
    are not probed first."""
    handler = CommandHandler(Core(settings, engine))
    runs = []
    for statuses in ({}, {1: "triage", 2: "investigating"}):
        _insert(engine, statuses)
        with _statements(engine) as seen:
            reply = handler.handle(user_id="U1", channel_id="D1", text="list", trigger_id="t")
        runs.append(([statement for statement, _ in seen], reply.text))
    (empty, said_empty), (full, said_full) = runs
    assert said_empty == "No open incidents. :tada:" and "INC-2" in said_full
    assert len(empty) == 1 and empty == full


@pytest.mark.parametrize("history", ["resolved", "open"])
def test_the_page_is_read_off_the_status_index_once_the_planner_knows_the_history(
    engine, settings, history
):
    """With the table analyzed (PostgreSQL's autovacuum does it; SQLite after ``ANALYZE``),
    the planner knows the open incidents are few among many resolved, or nearly all: either
    way the page's statement reads each status off ``ix_incident_list`` (or, where every
    incident is open, the number index, which then finds a page at once), never by walking
    back past the resolved ones; on SQLite the rows come off that index alone."""
    n = 2_000
    if history == "resolved":
        _insert(engine, {k: "resolved" for k in range(2, n + 1)} | {1: "triage"})
    else:
        _insert(engine, {k: "triage" for k in range(1, n + 1)})
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "ANALYZE incident" if engine.dialect.name == "postgresql" else "ANALYZE"
        )
        conn.commit()
    with _statements(engine) as seen, db.read(engine) as s:
        page = list_page(s, settings, limit=41)
    assert [i.number for i in page] == (
        [1] if history == "resolved" else list(range(n, n - 41, -1))
    )
    [(statement, parameters)] = seen
    postgres = engine.dialect.name == "postgresql"
    explain = "EXPLAIN (ANALYZE, TIMING OFF) " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        plan = [
            str(row[-1]).strip() for row in conn.exec_driver_sql(explain + statement, parameters)
        ]
    if postgres:
        scans = [line for line in plan if "Scan" in line and " on incident" in line]
        assert not any(line.startswith(("->  Seq Scan", "->  Bitmap")) for line in scans), plan
        # Each branch that ran read at most a page of rows (a walk back past the resolved
        # incidents would read them all).
        read = [int(m) for line in scans for m in re.findall(r"actual rows=(\d+)", line)]
        assert read and max(read) <= 41, plan
    else:
        scans = [line for line in plan if line.startswith(("SCAN", "SEARCH"))]
        assert not any(line.startswith("SCAN") and line != "SCAN present" for line in scans), plan
    page_scans = [line for line in scans if "ix_incident_status " not in line + " "]
    assert any("ix_incident_list" in line for line in page_scans), plan
    if not postgres:
        # The rows come off the index alone: no lookup of the incident's row per line.
        status_branches = [line for line in page_scans if "(status=?)" in line]
        assert status_branches, plan
        assert all("COVERING INDEX ix_incident_list" in line for line in status_branches), plan
    if history == "resolved":
        assert not any("uq_incident_number" in line for line in page_scans), "\n".join(plan)


def test_a_status_name_the_settings_would_refuse_never_reaches_the_statement(engine, settings):
    """The statuses are written into the statement: one that slipped past the settings'
    check (built in code, unvalidated) is refused before anything runs."""
    forged = Status.model_construct(name="triage') OR ('1'='1", label="x", terminal=False)
    unchecked = settings.model_copy(update={"statuses": [*settings.statuses, forged]})
    _insert(engine, {1: "resolved"})
    with _statements(engine) as seen, db.read(engine) as s, pytest.raises(ValueError):
        list_page(s, unchecked, limit=40)
    assert seen == []
