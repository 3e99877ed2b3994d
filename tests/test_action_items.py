"""Action items: the rules, due dates and overdue in the team's time zone, the report, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from incidentbot import db
from incidentbot.action_items import service as items
from incidentbot.action_items.due import parse_due
from incidentbot.clock import set_clock
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from tests.conftest import count

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    """The time every default ``now`` reads; move it with ``clock[0] = ...``."""
    current = [NOON]
    set_clock(lambda: current[0])
    try:
        yield current
    finally:
        set_clock(None)


def _settings(tz: str = "UTC") -> Settings:
    return Settings(timezone=tz)


def _declare(engine, settings, title="RPC p99 latency above 2s", actor="alice"):
    with db.transaction(engine) as s:
        return svc.declare(s, settings, title=title, severity="SEV2", actor=actor).ref


def _add(engine, settings, ref="INC-1", text="rotate the RPC API keys", **kw):
    kw.setdefault("actor", "alice")
    with db.transaction(engine) as s:
        return items.add(s, settings, ref, text, **kw).id


def _item(engine, item_id):
    with db.transaction(engine) as s:
        return items.get(s, item_id)


def _events(engine, ref="INC-1", prefix="action."):
    with db.transaction(engine) as s:
        return [e for e in svc.timeline(s, svc.get(s, ref)) if e.kind.startswith(prefix)]


# -- due dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-20", date(2026, 3, 20)),
        ("due:2026-03-20", date(2026, 3, 20)),
        ("+3d", date(2026, 3, 13)),
        ("+2w", date(2026, 3, 24)),
        ("today", date(2026, 3, 10)),
        ("Tomorrow", date(2026, 3, 11)),
        ("2026-3-9", None),  # before today: refused below
    ],
)
def test_due_dates_people_type(text, expected):
    if expected is None:
        with pytest.raises(DomainError, match="is in the past"):
            parse_due(text, timezone="UTC", now=NOON)
        return
    assert parse_due(text, timezone="UTC", now=NOON) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("due:2026-13-40", "due date '2026-13-40' is not a real date (month must be in 1..12)"),
        ("2026-02-30", "due date '2026-02-30' is not a real date (day is out of range for month)"),
        (
            "due:yesterday",
            "due date 'yesterday' is in the past (2026-03-09; today is 2026-03-10 in UTC)",
        ),
        ("due:next-week", "due date 'next-week' is not a date: use YYYY-MM-DD, +3d, +2w, today"),
        ("due:", "the due date is empty"),
        ("+99999d", "due date '+99999d' is more than ten years away"),
        ("2099-01-01", "due date '2099-01-01' is more than ten years away"),
    ],
)
def test_bad_due_dates_say_what_is_expected(text, message):
    with pytest.raises(DomainError) as exc:
        parse_due(text, timezone="UTC", now=NOON)
    assert str(exc.value).startswith(message)


def test_relative_due_dates_count_from_today_in_the_team_time_zone():
    late_evening_utc = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    # Auckland (UTC+13 in March) is already on the 11th; Los Angeles (UTC-7) still on the 10th.
    assert parse_due("today", timezone="Pacific/Auckland", now=late_evening_utc) == date(
        2026, 3, 11
    )
    assert parse_due("+1d", timezone="America/Los_Angeles", now=late_evening_utc) == date(
        2026, 3, 11
    )
    with pytest.raises(DomainError, match="today is 2026-03-11 in Pacific/Auckland"):
        parse_due("2026-03-10", timezone="Pacific/Auckland", now=late_evening_utc)


# -- the rules ---------------------------------------------------------------------------------


def test_add_stores_the_item_and_puts_it_on_the_timeline(engine, clock):
    st = _settings()
    _declare(engine, st)
    first = _add(engine, st, owner="bob", due=date(2026, 3, 13), priority="high")
    second = _add(engine, st, text="  write  the\tfailover runbook ")
    one, two = _item(engine, first), _item(engine, second)
    assert (one.owner, one.due_date, one.priority, one.status) == (
        "bob",
        date(2026, 3, 13),
        "high",
        "open",
    )
    assert (one.created_by, one.created_at, one.done_at) == ("alice", NOON, None)
    assert (two.text, two.owner, two.due_date, two.priority) == (
        "write the failover runbook",
        None,
        None,
        "medium",
    )
    events = _events(engine)
    assert [e.kind for e in events] == ["action.added", "action.added"]
    assert events[0].summary == (
        f"Action item #{first} added: rotate the RPC API keys "
        "(owner bob, due 2026-03-13, high priority)"
    )
    assert events[0].data == {
        "item": first,
        "text": "rotate the RPC API keys",
        "owner": "bob",
        "due_date": "2026-03-13",
        "priority": "high",
        "source": None,
    }
    assert events[1].actor == "alice" and "no owner" in events[1].summary


def test_every_change_goes_on_the_timeline(engine, clock):
    st = _settings()
    _declare(engine, st)
    item = _add(engine, st)
    steps = [
        lambda s: items.assign(s, st, item, "bob", actor="carol"),
        lambda s: items.assign(s, st, f"#{item}", "dave", actor="carol"),
        lambda s: items.done(s, st, item, actor="dave"),
        lambda s: items.reopen(s, st, item, actor="alice"),
        lambda s: items.wont_do(s, st, item, "superseded by the v2 gateway", actor="alice"),
        lambda s: items.reopen(s, st, item, actor="bob"),
    ]
    for step in steps:
        clock[0] += timedelta(minutes=5)
        with db.transaction(engine) as s:
            step(s)
    events = _events(engine)
    assert [(e.kind, e.actor) for e in events] == [
        ("action.added", "alice"),
        ("action.assigned", "carol"),
        ("action.assigned", "carol"),
        ("action.done", "dave"),
        ("action.reopened", "alice"),
        ("action.wont_do", "alice"),
        ("action.reopened", "bob"),
    ]
    assert events[2].summary == f"Action item #{item} assigned to dave (was bob)"
    assert events[2].data == {"item": item, "owner": "dave", "previous": "bob"}
    assert events[5].data == {"item": item, "reason": "superseded by the v2 gateway"}
    assert events[6].summary == f"Action item #{item} reopened (was won't do)"
    final = _item(engine, item)
    assert (final.status, final.status_reason, final.done_at, final.owner) == (
        "open",
        None,
        None,
        "dave",
    )
    assert final.updated_at == NOON + timedelta(minutes=30)


def test_done_sets_done_at_and_wont_do_keeps_the_reason(engine, clock):
    st = _settings()
    _declare(engine, st)
    a, b = _add(engine, st), _add(engine, st, text="add a second RPC provider")
    clock[0] = NOON + timedelta(hours=1)
    with db.transaction(engine) as s:
        items.done(s, st, a, actor="bob")
        items.wont_do(s, st, b, "the provider contract covers it", actor="bob")
    assert _item(engine, a).done_at == NOON + timedelta(hours=1)
    assert (_item(engine, b).status, _item(engine, b).status_reason) == (
        "wont_do",
        "the provider contract covers it",
    )


def _refusals(st, ids):
    a, done_item, other = ids
    return [
        (lambda s: items.done(s, st, 999, actor="bob"), "there is no action item #999"),
        (lambda s: items.done(s, st, "x1", actor="bob"), "'x1' is not an action item id"),
        (
            lambda s: items.done(s, st, other, actor="bob", incident=svc.get(s, "INC-1")),
            f"action item #{other} belongs to INC-2, not INC-1",
        ),
        (
            lambda s: items.done(s, st, done_item, actor="bob"),
            f"action item #{done_item} is already done (since",
        ),
        (
            lambda s: items.wont_do(s, st, done_item, "no", actor="bob"),
            f"action item #{done_item} is done: cannot mark it won't do; reopen it first",
        ),
        (lambda s: items.wont_do(s, st, a, "   ", actor="bob"), "the reason is empty"),
        (lambda s: items.reopen(s, st, a, actor="bob"), f"action item #{a} is already open"),
        (
            lambda s: items.assign(s, st, a, "bob", actor="bob"),
            f"action item #{a} is already owned by bob",
        ),
        (
            lambda s: items.assign(s, st, done_item, "carol", actor="bob"),
            f"action item #{done_item} is done: cannot assign it; reopen it first",
        ),
        (lambda s: items.add(s, st, "INC-1", "  ", actor="bob"), "the action item's text is empty"),
        (
            lambda s: items.add(s, st, "INC-1", "x" * 2001, actor="bob"),
            "the action item's text is 2001 characters long",
        ),
        (
            lambda s: items.add(s, st, "INC-1", "x", actor="bob", priority="p0"),
            "unknown priority 'p0'",
        ),
        (
            lambda s: items.add(s, st, "INC-1", "x", actor="bob", due=date(2026, 3, 9)),
            "due date 2026-03-09 is in the past",
        ),
        (lambda s: items.add(s, st, "INC-9", "x", actor="bob"), "no incident INC-9"),
    ]


def test_refused_requests_say_why_and_change_nothing(engine, clock):
    st = _settings()
    _declare(engine, st)
    _declare(engine, st, title="Validators missing attestations")
    a = _add(engine, st, owner="bob")
    done_item = _add(engine, st, text="page the provider")
    other = _add(engine, st, ref="INC-2", text="raise the peer limit")
    with db.transaction(engine) as s:
        items.done(s, st, done_item, actor="bob")
    before = (count(engine, "timeline_event"), count(engine, "action_item"))
    snapshot = [_item(engine, i).model_dump() for i in (a, done_item, other)]
    for call, message in _refusals(st, (a, done_item, other)):
        with pytest.raises(DomainError) as exc, db.transaction(engine) as s:
            call(s)
        assert str(exc.value).startswith(message), (message, str(exc.value))
    assert (count(engine, "timeline_event"), count(engine, "action_item")) == before
    assert [_item(engine, i).model_dump() for i in (a, done_item, other)] == snapshot


def test_a_source_makes_one_item_only(engine, clock):
    st = _settings()
    _declare(engine, st)
    key = "reaction:C123:1700000000.000100"
    first = _add(engine, st, source_key=key)
    with db.transaction(engine) as s:
        assert items.find_by_source(s, key).id == first
    with pytest.raises(IntegrityError), db.transaction(engine) as s:
        items.add(s, st, "INC-1", "again", actor="bob", source_key=key)
    assert count(engine, "action_item") == 1
    assert len(_events(engine)) == 1


def test_items_can_be_added_to_a_resolved_incident(engine, clock):
    st = _settings()
    _declare(engine, st)
    with db.transaction(engine) as s:
        svc.resolve(s, st, "INC-1", "failed over to rpc-3", actor="alice")
    item = _add(engine, st, text="write the postmortem follow-up")
    assert _item(engine, item).status == "open"


# -- overdue, in the team's time zone ----------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "not_yet", "overdue_from"),
    [
        # Due 2026-03-10: overdue once the 10th has ended where the team is.
        (
            "UTC",
            datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 11, 0, 0, tzinfo=UTC),
        ),
        # Los Angeles is UTC-7 (PDT) then: its 10th ends at 07:00 UTC on the 11th.
        (
            "America/Los_Angeles",
            datetime(2026, 3, 11, 6, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 11, 7, 0, tzinfo=UTC),
        ),
        # Auckland is UTC+13 (NZDT): its 10th ends at 11:00 UTC on the 10th.
        (
            "Pacific/Auckland",
            datetime(2026, 3, 10, 10, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 10, 11, 0, tzinfo=UTC),
        ),
    ],
)
def test_an_item_due_today_is_overdue_only_once_the_day_has_ended_there(
    engine, clock, tz, not_yet, overdue_from
):
    st = _settings(tz)
    clock[0] = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    _declare(engine, st)
    item = _add(engine, st, due=date(2026, 3, 10))

    def overdue_ids():
        with db.transaction(engine) as s:
            listed = {v.item.id: v.overdue for v in items.list_items(s, st)}
            only = [v.item.id for v in items.overdue(s, st)]
            return listed[item], only

    clock[0] = not_yet
    assert overdue_ids() == (False, [])
    clock[0] = overdue_from
    assert overdue_ids() == (True, [item])


def test_done_and_undated_items_are_never_overdue(engine, clock):
    st = _settings()
    _declare(engine, st)
    dated = _add(engine, st, due=date(2026, 3, 10))
    finished = _add(engine, st, due=date(2026, 3, 10))
    undated = _add(engine, st)
    with db.transaction(engine) as s:
        items.done(s, st, finished, actor="bob")
    clock[0] = datetime(2026, 4, 1, tzinfo=UTC)
    with db.transaction(engine) as s:
        assert [v.item.id for v in items.overdue(s, st)] == [dated]
        views = {v.item.id: v.overdue for v in items.list_items(s, st, status=None)}
    assert views == {dated: True, finished: False, undated: False}


def test_listing_filters(engine, clock):
    st = _settings()
    _declare(engine, st)
    _declare(engine, st, title="Validators missing attestations")
    a = _add(engine, st, owner="bob", due=date(2026, 3, 11))
    b = _add(engine, st, ref="INC-2", owner="bob")
    c = _add(engine, st, ref="INC-2", owner="carol")
    with db.transaction(engine) as s:
        items.done(s, st, c, actor="carol")
    clock[0] = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)

    def ids(**kw):
        with db.transaction(engine) as s:
            inc = svc.get(s, kw.pop("incident")) if "incident" in kw else None
            return [v.item.id for v in items.list_items(s, st, incident=inc, **kw)]

    assert ids() == [a, b]
    assert ids(status=None) == [a, b, c]
    assert ids(status="done") == [c]
    assert ids(owner="bob") == [a, b]
    assert ids(owner="carol") == []
    assert ids(incident="INC-2", status=None) == [b, c]
    assert ids(overdue=True) == [a]


# -- the report --------------------------------------------------------------------------------


def test_report_by_owner_and_by_incident(engine, clock):
    st = _settings("Europe/Berlin")
    _declare(engine, st)
    _declare(engine, st, title="Validators missing attestations")
    a = _add(engine, st, owner="bob", due=date(2026, 3, 11))
    b = _add(engine, st, owner="bob", due=date(2026, 3, 20))
    c = _add(engine, st, ref="INC-2", owner="carol", due=date(2026, 3, 11))
    d = _add(engine, st, ref="INC-2")
    e = _add(engine, st, ref="INC-2", owner="carol", due=date(2026, 3, 11))
    with db.transaction(engine) as s:
        items.done(s, st, e, actor="carol")  # done: in neither count
    clock[0] = datetime(2026, 3, 11, 23, 30, tzinfo=UTC)  # 00:30 on the 12th in Berlin
    with db.transaction(engine) as s:
        rep = items.report(s, st)
    assert rep.to_json() == {
        "today": "2026-03-12",
        "timezone": "Europe/Berlin",
        "open": 4,
        "overdue": 2,
        "by_owner": [
            # due the 11th, today the 12th in Berlin: one day overdue
            {
                "owner": "bob",
                "open": 2,
                "overdue": 1,
                "items": [a, b],
                "overdue_items": [a],
                "days_overdue": {str(a): 1},
            },
            {
                "owner": "carol",
                "open": 1,
                "overdue": 1,
                "items": [c],
                "overdue_items": [c],
                "days_overdue": {str(c): 1},
            },
            {
                "owner": None,
                "open": 1,
                "overdue": 0,
                "items": [d],
                "overdue_items": [],
                "days_overdue": {},
            },
        ],
        "by_incident": [
            {
                "incident": "INC-1",
                "title": "RPC p99 latency above 2s",
                "open": 2,
                "overdue": 1,
                "items": [a, b],
                "overdue_items": [a],
                "days_overdue": {str(a): 1},
            },
            {
                "incident": "INC-2",
                "title": "Validators missing attestations",
                "open": 2,
                "overdue": 1,
                "items": [c, d],
                "overdue_items": [c],
                "days_overdue": {str(c): 1},
            },
        ],
    }


# -- the command line --------------------------------------------------------------------------


def test_cli_lifecycle(cli, clock):
    assert cli("db", "upgrade")[0] == 0
    assert cli("incident", "declare", "RPC p99 latency above 2s", "--sev", "2")[0] == 0
    assert cli("incident", "declare", "Validators missing attestations")[0] == 0
    code, out, err = cli(
        "actions", "add", "INC-1", "rotate", "the", "keys", "--owner", "bob", "--due", "+3d",
        "--priority", "high",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "Added action item #1 to INC-1: rotate the keys" in out
    assert "Owner: bob   Due: 2026-03-13   Priority: high" in out
    assert cli("actions", "add", "INC-2", "raise the peer limit")[0] == 0
    code, out, _ = cli("actions", "list")
    assert code == 0 and "today is 2026-03-10 in UTC" in out
    assert "rotate the keys" in out and "raise the peer limit" in out
    assert cli("actions", "assign", "2", "carol", "--as", "dave")[1].strip() == (
        "Action item #2 is now owned by carol"
    )
    assert cli("actions", "done", "#1")[0] == 0
    code, out, _ = cli("actions", "wontdo", "2", "covered", "by", "the", "provider")
    assert out.strip() == "Action item #2 closed as won't do: covered by the provider"
    assert cli("actions", "reopen", "2", "-i", "INC-2")[0] == 0
    code, out, _ = cli("actions", "list", "--status", "all", "--json")
    listed = json.loads(out)
    assert [(i["id"], i["incident"], i["status"], i["owner"]) for i in listed] == [
        (1, "INC-1", "done", "bob"),
        (2, "INC-2", "open", "carol"),
    ]
    code, out, _ = cli("timeline", "INC-2")
    assert "action.assigned" in out and "action.wont_do" in out and "action.reopened" in out
    assert "dave" in out  # --as is the actor


def test_cli_refusals_are_one_line_and_change_nothing(cli, clock, database_url):
    cli("db", "upgrade")
    cli("incident", "declare", "RPC p99 latency above 2s")
    cli("incident", "declare", "Validators missing attestations")
    cli("actions", "add", "INC-1", "rotate the keys")
    cli("actions", "add", "INC-2", "raise the peer limit")
    cli("actions", "done", "1")
    engine = db.make_engine(database_url)
    try:
        before = (count(engine, "timeline_event"), count(engine, "action_item"))
        cases = [
            (
                ("actions", "add", "INC-1", "x", "--due", "2026-13-40"),
                "error: due date '2026-13-40' is not a real date (month must be in 1..12)",
            ),
            (
                ("actions", "add", "INC-1", "x", "--due", "yesterday"),
                "error: due date 'yesterday' is in the past (2026-03-09; today is 2026-03-10",
            ),
            (
                ("actions", "add", "INC-1", "x", "--priority", "asap"),
                "error: unknown priority 'asap'",
            ),
            (("actions", "add", "INC-7", "x"), "error: no incident INC-7"),
            (("actions", "done", "42"), "error: there is no action item #42"),
            (
                ("actions", "done", "2", "-i", "INC-1"),
                "error: action item #2 belongs to INC-2, not INC-1",
            ),
            (
                ("actions", "done", "1"),
                "error: action item #1 is already done (since 2026-03-10 12:00 UTC)",
            ),
            (("actions", "reopen", "2"), "error: action item #2 is already open"),
            (("actions", "list", "--status", "closed"), "error: unknown status 'closed'"),
            (
                ("actions", "list", "--status", "done", "--overdue"),
                "error: --overdue lists open items only",
            ),
        ]
        for argv, message in cases:
            code, _, err = cli(*argv)
            assert code == 1, argv
            assert err.startswith(message) and err.count("\n") == 1, (argv, err)
        assert (count(engine, "timeline_event"), count(engine, "action_item")) == before
    finally:
        engine.dispose()


def test_cli_report(cli, clock):
    cli("db", "upgrade")
    cli("incident", "declare", "RPC p99 latency above 2s")
    assert cli("actions", "report")[1].startswith("No open action items (today is 2026-03-10")
    cli("actions", "add", "INC-1", "rotate the keys", "--owner", "bob", "--due", "today")
    cli("actions", "add", "INC-1", "write the runbook", "--due", "+7d")
    clock[0] = NOON + timedelta(days=3)
    code, out, _ = cli("actions", "report")
    assert code == 0
    assert "2 open action items, 1 overdue (today is 2026-03-13 in UTC)." in out
    assert "#1 (3d)" in out  # due on the 10th: three days overdue
    assert "By owner" in out and "By incident" in out and "(nobody)" in out
    data = json.loads(cli("actions", "report", "--json")[1])
    assert data["by_owner"][0] == {
        "owner": "bob",
        "open": 1,
        "overdue": 1,
        "items": [1],
        "overdue_items": [1],
        "days_overdue": {"1": 3},
    }
    assert data["by_incident"][0]["incident"] == "INC-1" and data["overdue"] == 1
    code, out, _ = cli("actions", "list", "--overdue")
    assert "OVERDUE by 3d" in out and "rotate the keys" in out and "write the runbook" not in out
    listed = json.loads(cli("actions", "list", "--overdue", "--json")[1])
    assert [(i["id"], i["overdue"], i["days_overdue"]) for i in listed] == [(1, True, 3)]


def test_cli_owners_known_from_slack_are_one_person(cli, clock, engine):
    from incidentbot.people.models import Person

    cli("db", "upgrade")
    cli("incident", "declare", "RPC p99 latency above 2s")
    with db.transaction(engine) as s:  # as the bot records people it meets in Slack
        s.add(Person(user_id="U0BOB0001", name="bob", real_name="Bob Okafor",
                     email="bob@nodeworks.example", updated_at=NOON))  # fmt: skip
    cli("actions", "add", "INC-1", "rotate the keys", "--owner", "@bob")
    cli("actions", "add", "INC-1", "write the runbook", "--owner", "Bob Okafor")
    cli("actions", "add", "INC-1", "page the provider", "--owner", "bob@nodeworks.example")
    cli("actions", "add", "INC-1", "review timeouts", "--owner", "the platform team")
    data = json.loads(cli("actions", "list", "--json")[1])
    assert [d["owner"] for d in data] == ["U0BOB0001"] * 3 + ["the platform team"]
    report = json.loads(cli("actions", "report", "--json")[1])
    assert [(o["owner"], o["open"]) for o in report["by_owner"]] == [
        ("U0BOB0001", 3), ("the platform team", 1)
    ]  # fmt: skip
    code, out, _ = cli("actions", "report")
    assert code == 0 and "Bob Okafor" in out and "U0BOB0001" not in out
    assert "Bob Okafor" in cli("actions", "list", "--owner", "bob")[1]
    code, out, _ = cli("actions", "assign", "4", "@bob")
    assert out.strip() == "Action item #4 is now owned by Bob Okafor"
