"""The impact in numbers and when it started: typed from the CLI (both back ends), sampled from
the beacon node, refused when they cannot be read; asked for at the resolve in Slack."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from incidentbot import db
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.postmortems import impact_start
from tests.slack_harness import channel_of, running_bot, timeline_kinds, wait_for


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body) if ack.body else {}


@pytest.fixture
def resolved(cli):
    assert cli("incident", "declare", "Validators", "miss", "attestations", "--sev", "1")[0] == 0
    assert cli("incident", "resolve", "INC-1", "restarted", "the", "signer")[0] == 0
    return cli


def impact_of(cli) -> str:
    code, out, err = cli("postmortem", "render", "INC-1")
    assert code == 0, err
    return out.split("## Impact", 1)[1].split("## Trigger", 1)[0]


def summaries(database_url: str) -> list[str]:
    engine = db.make_engine(database_url)
    try:
        with db.transaction(engine) as s:
            return [e.summary for e in svc.timeline(s, svc.get(s, "INC-1"))]
    finally:
        engine.dispose()


def test_numbers_typed_on_the_command_line_are_shown_with_who_typed_them(resolved, database_url):
    code, out, err = resolved(
        "postmortem", "impact", "INC-1", "--requests-failed", "1,200", "--validators", "4",
        "--degraded", "1h30m", "--as", "carol",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    for line, start in zip(lines, ("requests failed: 1,200", "validators affected: 4",
                                   "degraded service: 1h 30m"), strict=False):  # fmt: skip
        assert line.startswith(f"INC-1 impact: {start} (typed by carol at "), line
    assert "INC-1 impact: users affected: not given" not in out  # only what changed
    section = impact_of(resolved)
    assert "| Requests failed | 1,200 | typed by carol at " in section
    assert "| Degraded service | 1h 30m | typed by carol at " in section
    assert "*Numbers not given:* users affected, blocks behind, missed slots:" in section
    code, out, _ = resolved("postmortem", "impact", "INC-1")  # no option: what is stored
    assert "INC-1 impact: users affected: not given" in out
    assert "INC-1 impact: validators affected: 4 (typed by carol" in out
    # cleared: not given any more, and the timeline says who did what
    code, out, err = resolved("postmortem", "impact", "INC-1", "--clear", "validators")
    assert code == 0, err
    assert "*Numbers not given:* users affected, validators affected," in impact_of(resolved)
    said = [t for t in summaries(database_url) if t.startswith("Postmortem impact")]
    assert said == [
        "Postmortem impact: requests failed 1,200; validators affected 4; degraded service 1h 30m",
        "Postmortem impact: validators affected cleared",
    ]


REFUSED = [
    (("--requests-failed", "-3"), "--requests-failed: requests failed must not be negative"),
    (("--users", "2.5"), "--users: users affected '2.5' is not a whole number"),
    (("--users", "30 people"), "--users: users affected '30 people' is not a whole number"),
    (("--degraded", "40"), "--degraded: degraded service '40' needs a unit: e.g. 40m"),
    (("--degraded", "soon"), "--degraded: degraded service 'soon' is not a duration"),
    (("--degraded", "400d"), "--degraded: degraded service is longer than a year"),
    (("--missed-slots", "1" * 14), "--missed-slots: missed slots 11111111111111 is too large"),
    (("--clear", "bananas"), "unknown impact number 'bananas': allowed are requests_failed"),
    (("--users", "3", "--clear", "users"), "--users and --clear users: give one of them"),
]


def test_numbers_that_cannot_be_read_change_nothing(resolved, database_url):
    for args, message in REFUSED:
        # one good number beside the bad one: nothing is saved
        code, out, err = resolved("postmortem", "impact", "INC-1", "--blocks-behind", "3", *args)
        assert code != 0 and out == "", args
        assert message in err, (args, err)
    assert "*Numbers not given:* requests failed, users affected, validators affected, " in (
        impact_of(resolved)
    )
    assert not [t for t in summaries(database_url) if t.startswith("Postmortem")]


def test_chain_numbers_come_from_the_samples_unless_someone_typed_them(resolved, database_url):
    engine = db.make_engine(database_url)
    try:
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            for epoch, missed, slots, distance in ((100, [7, 9], [3201], 2), (101, [9], [], 5)):
                svc.record(
                    s, inc, "impact.sample", "incidentbot", f"epoch {epoch}",
                    now=datetime(2026, 1, 5, 12, epoch - 100, tzinfo=UTC),
                    data={"epoch": epoch, "current_epoch": epoch + 1, "validators": 4,
                          "missed_attestations": missed, "proposals": 1,
                          "missed_proposals": slots, "sync_distance": distance,
                          "finalized_epoch": epoch - 1, "source": "beacon-1:5052"},
                )  # fmt: skip
    finally:
        engine.dispose()
    section = impact_of(resolved)
    assert (
        "| Validators affected | 2 | sampled from the beacon node: validators not live "
        "(2 samples, epochs 100–101; beacon-1:5052) |" in section
    ), section
    assert "| Blocks behind | 5 | sampled from the beacon node: the largest sync " in section
    assert "| Missed slots | 1 | sampled from the beacon node: proposer slots without a block" in (
        section
    )
    assert resolved("postmortem", "impact", "INC-1", "--validators", "6")[0] == 0
    section = impact_of(resolved)
    assert "| Validators affected | 6 | typed by alice at " in section
    assert "(sampled: 2) |" in section  # what the beacon node saw stays beside it


def test_downgrading_past_impact_numbers_needs_drop_data(resolved):
    code, _out, err = resolved("db", "downgrade", "0017")  # no numbers yet: nothing is lost
    assert (code, err) == (0, ""), err
    assert resolved("db", "upgrade")[0] == 0
    assert resolved("postmortem", "impact", "INC-1", "--users", "12")[0] == 0
    code, _out, err = resolved("db", "downgrade", "0017")
    assert code == 1 and "column postmortem.impact (1 row with a value)" in err


NOW = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)  # 01:30 in Berlin


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20m ago", datetime(2026, 3, 2, 0, 10, tzinfo=UTC)),
        ("01:05", datetime(2026, 3, 2, 0, 5, tzinfo=UTC)),  # today, Berlin time
        ("23:50", datetime(2026, 3, 1, 22, 50, tzinfo=UTC)),  # not yet today: yesterday's
        ("yesterday 23:50", datetime(2026, 3, 1, 22, 50, tzinfo=UTC)),
        ("2026-03-01 22:00", datetime(2026, 3, 1, 21, 0, tzinfo=UTC)),  # the wall clock's
        ("2026-03-01T22:00Z", datetime(2026, 3, 1, 22, 0, tzinfo=UTC)),
        ("same as detected", datetime(2026, 3, 2, 0, 12, tzinfo=UTC)),
        ("Declared.", datetime(2026, 3, 2, 0, 20, tzinfo=UTC)),
    ],
)
def test_when_the_impact_started_is_read_as_people_say_it(text, expected):
    refs = {
        "detected": datetime(2026, 3, 2, 0, 12, tzinfo=UTC),
        "declared": datetime(2026, 3, 2, 0, 20, tzinfo=UTC),
    }
    assert impact_start.parse(text, references=refs, timezone="Europe/Berlin", now=NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "say when the impact started: use 20m ago"),
        ("soon", "'soon' is not a time: use 20m ago, 14:05"),
        ("25:10", "'25:10' is not a time of day"),
        ("same as detected", "detected is not recorded on this incident"),
        ("<script>", "'<script>' is not a time"),
        ("2099-01-01 00:00", "'2099-01-01 00:00' is in the future"),
        ("today 23:59:59", "is in the future"),
    ],
)
def test_what_is_not_a_time_is_refused_with_what_to_type(text, message):
    refs = {"detected": None, "declared": NOW}
    with pytest.raises(DomainError) as refused:
        impact_start.parse(text, references=refs, timezone="UTC", now=NOW)
    assert message in str(refused.value)


def _views(slack, callback: str) -> list:
    return [
        v
        for v in slack.workspace.views.values()
        if v.is_open and v.data.get("callback_id") == callback
    ]


def test_the_resolve_asks_only_when_the_impact_start_is_missing(engine):
    with running_bot(engine) as (_bot, slack):
        reply(slack.driver.slash_command("declare sev2 RPC p99 above 2s"))
        ch = channel_of(engine)
        slack.driver.join_channel("bob", ch)

        def run(text, user="bob"):
            return reply(slack.driver.slash_command(text, user=user, channel=ch))

        run("resolve failed over to rpc-3")
        asked = wait_for(lambda: _views(slack, "resolve_impact_started"), what="the form")[0]
        hint = asked.data["blocks"][1]["hint"]["text"]
        assert "or same as detected (" in hint and " / same as declared (" in hint
        # Skip closes it: nothing recorded
        assert slack.driver.close_view(asked.id, user="bob") is None  # the bot is not told
        with db.transaction(engine) as s:
            assert svc.get(s, "INC-1").impact_started_at is None
        # The form left open while someone set it another way is refused, in the form.
        run("reopen")
        run("resolve failed over to rpc-3 again")
        asked = wait_for(lambda: _views(slack, "resolve_impact_started"), what="the 2nd form")[0]
        run("milestone impact-started 30m ago", user="alice")
        ack = slack.driver.view_submission(asked.id, {"when": "same as declared"}, user="bob")
        assert "was recorded meanwhile" in reply(ack)["errors"]["when"]
        assert timeline_kinds(engine).count("milestone.set") == 1
        slack.driver.close_view(asked.id, user="bob")
        # Known: the resolve does not ask.
        run("reopen")
        body = run("resolve failed over to rpc-3, third time")
        assert body["response_type"] == "in_channel"
        assert not _views(slack, "resolve_impact_started")
        # "same as declared" when no one raced it
        reply(slack.driver.slash_command("declare sev2 Indexer lag"))
        ch2 = channel_of(engine, "INC-2")
        slack.driver.join_channel("bob", ch2)
        reply(slack.driver.slash_command("resolve caught up", user="bob", channel=ch2))
        asked = wait_for(lambda: _views(slack, "resolve_impact_started"), what="the 3rd form")[0]
        ack = slack.driver.view_submission(asked.id, {"when": "same as declared"}, user="bob")
        assert not reply(ack).get("errors")
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-2")
            assert inc.impact_started_at == inc.declared_at
