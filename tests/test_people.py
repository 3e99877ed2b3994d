"""The people directory: one person per human across Slack, PagerDuty (email), GitHub and the
CLI; Slack users looked up once when first seen, cached, refreshed when stale; and outputs of a
Slack-run incident that name people, never their raw Slack ids."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from pydantic import ValidationError
from sqlmodel import select

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.people import Directory
from incidentbot.people.config import PersonEntry
from incidentbot.people.lookup import FRESH, Sightings, remember
from incidentbot.people.models import Person
from incidentbot.people.render import event_text
from incidentbot.ports import UserInfo
from incidentbot.sandbox.slack.server import SlackSandbox
from incidentbot.slack.chat import SlackChat
from tests.slack_harness import channel_of, running_bot, settled

BOB = "U0N581U33XT"
NOW = datetime(2026, 3, 11, 10, 0, tzinfo=UTC)
BOB_ENTRY = {
    "name": "Bob Okafor",
    "email": "bob@nodeworks.example",
    "github": "bob-ok",
    "cli": ["bob", "bokafor"],
}
DANA_ENTRY = {"name": "Dana Reyes", "email": "dana@nodeworks.example", "cli": ["dana"]}


# -- settings ------------------------------------------------------------------------------


def test_the_people_settings_accept_a_team_and_refuse_an_identity_given_twice():
    settings = Settings(people=[{**BOB_ENTRY, "slack": BOB}, DANA_ENTRY])
    assert [p.name for p in settings.people] == ["Bob Okafor", "Dana Reyes"]
    assert settings.people[0].cli == ["bob", "bokafor"]
    for people, problem in [
        ([BOB_ENTRY, {**DANA_ENTRY, "cli": ["dana", "bob"]}], "cli bob is given to two people"),
        ([BOB_ENTRY, {**DANA_ENTRY, "github": "BOB-OK"}], "github bob-ok is given to two"),
        ([BOB_ENTRY, {**DANA_ENTRY, "email": "Bob@nodeworks.example"}], "email bob@nodeworks"),
        ([{"name": "Bob", "slack": "bob"}], "'bob' is not a Slack user id"),
        ([{"name": "Bob", "email": "bob at nodeworks"}], "is not an email address"),
        ([{"name": "Bob", "github": "-bob-"}], "is not a GitHub login"),
        ([{"name": "  "}], "name is empty"),
        ([{"name": "Bob", "phone": "555"}], "phone"),
    ]:
        with pytest.raises(ValidationError) as exc:
            Settings(people=people)
        assert problem in str(exc.value)


def test_the_people_settings_come_from_the_config_file(cli, tmp_path: Path, monkeypatch):
    config = tmp_path / "incidentbot.yaml"
    config.write_text(yaml.safe_dump({"people": [BOB_ENTRY, {**DANA_ENTRY, "cli": ["bob"]}]}))
    monkeypatch.setenv("INCIDENTBOT_CONFIG", str(config))
    code, out, err = cli("incident", "list")
    assert code != 0
    assert "cli bob is given to two people" in out + err


# -- the directory -------------------------------------------------------------------------


def _cache(engine, *rows: tuple[str, str, str | None, str | None], at: datetime = NOW) -> None:
    with db.transaction(engine) as s:
        for user_id, name, real, email in rows:
            remember(s, user_id, name, real, email, now=at)


def test_one_human_is_one_person_whatever_identity_they_came_through(engine):
    _cache(
        engine,
        (BOB, "bob", "Bob Okafor", "Bob@NodeWorks.example"),
        ("U0ALICE0001", "alice", "Alice Moreau", "alice@nodeworks.example"),
    )
    configured = [PersonEntry(**BOB_ENTRY), PersonEntry(**DANA_ENTRY)]
    actors = ["bob", BOB, "Bob Okafor", "github:bob-ok", "slack:U0ALICE0001", "dana", "zed"]
    with db.transaction(engine) as s:
        people = Directory.load(s, configured, [*actors, "U0NOBODY001"])

    # Slack id, CLI users, the name, the GitHub login and the email (as PagerDuty gives it):
    # the configured entry joined to the Slack user by email.
    bob = people.find(BOB)
    assert bob is not None and bob.name == "Bob Okafor" and bob.slack_id == BOB
    same = [
        people.find("bob"),
        people.find("Bob Okafor"),
        people.find("github:bob-ok"),
        people.by_cli("bokafor"),
        people.by_github("@Bob-OK"),
        people.by_email("BOB@nodeworks.example"),
    ]
    assert all(p is not None and p.key == bob.key for p in same)
    assert people.slack_id("bokafor") == BOB  # a CLI user is mentioned as their Slack self
    assert people.key("bob") == people.key(BOB) == people.key("slack:" + BOB)

    # A Slack user with no entry: Slack's real name. Someone outside Slack: the entry's name.
    assert people.name("slack:U0ALICE0001") == "Alice Moreau"
    assert people.name("dana") == "Dana Reyes"
    dana = people.by_email("dana@nodeworks.example")
    assert dana is not None and dana.slack_id is None and dana.cli == ("dana",)
    # Unknown identities are shown as stored, clearly themselves.
    assert people.name("U0NOBODY001") == "U0NOBODY001"
    assert people.name("zed") == "zed"
    assert people.find("zed") is None and people.by_email("eve@elsewhere.example") is None
    assert people.name(None) == "nobody"


def test_a_timeline_entry_names_its_people_in_text(engine):
    _cache(engine, (BOB, "bob", "Bob Okafor", None))
    with db.transaction(engine) as s:
        people = Directory.load(s, [], [BOB, "carol"])
    data = {"users": [BOB, "carol"]}
    assert event_text(f"Invited {BOB}, carol", data, people) == "Invited Bob Okafor, carol"
    # A bare id of someone known (a run's "cancelled by U…") reads as their name too; an id
    # nobody knows stays as it is.
    assert event_text(f"cancelled by {BOB}", {}, people) == "cancelled by Bob Okafor"
    assert event_text("cancelled by U0NOBODY001", {}, people) == "cancelled by U0NOBODY001"
    # A mention someone typed in Slack reads as @Name.
    assert event_text(f"ping <@{BOB}>", {}, people) == "ping @Bob Okafor"


# -- looking Slack users up ------------------------------------------------------------------


class GatedChat:
    """The real Slack client against the local server, counting users.info calls; a lookup
    waits for ``gate`` so a test can show nobody waits for it."""

    def __init__(self, chat: SlackChat) -> None:
        self.chat = chat
        self.asked: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def user_info(self, user_id: str) -> UserInfo | None:
        self.gate.wait(30)
        self.asked.append(user_id)
        return self.chat.user_info(user_id)


@pytest.fixture
def slack():
    with SlackSandbox() as sb:
        yield sb


def test_a_slack_user_is_looked_up_once_off_the_request_path_then_refreshed(engine, slack):
    ws = slack.workspace
    alice, bob = ws.user("alice").id, ws.user("bob").id
    chat = GatedChat(SlackChat(slack.bot_token, base_url=slack.base_url))
    clock = [NOW]
    sightings = Sightings(engine, chat, clock=lambda: clock[0])  # type: ignore[arg-type]
    try:
        chat.gate.clear()
        sightings.saw(alice, "slack:" + alice, bob, "alice", "incidentbot")
        # saw() returned while Slack has not answered: the lookups are the thread's.
        assert chat.asked == []
        chat.gate.set()
        sightings.wait()
        assert sorted(chat.asked) == sorted([alice, bob])
        with db.transaction(engine) as s:
            rows = {p.user_id: (p.name, p.real_name) for p in s.exec(select(Person))}
        assert rows == {alice: ("alice", "Alice Moreau"), bob: ("bob", "Bob Okafor")}

        sightings.saw(alice, bob)  # seen again: cached, Slack is not asked
        sightings.wait()
        assert len(chat.asked) == 2

        # Another replica (a new process) finds them cached in the table: no call either.
        other = Sightings(engine, chat, clock=lambda: clock[0])  # type: ignore[arg-type]
        other.saw(alice)
        other.wait()
        other.close()
        assert len(chat.asked) == 2

        # A day later the name is stale: asked once more, and the new name is kept.
        ws.user("alice").real_name = "Alice Moreau-Lind"
        clock[0] = NOW + FRESH + timedelta(minutes=1)
        sightings.saw(alice)
        sightings.wait()
        assert chat.asked.count(alice) == 2
        with db.transaction(engine) as s:
            person = s.get(Person, alice)
            assert person is not None and person.real_name == "Alice Moreau-Lind"

        sightings.saw("U0NOBODY001")  # not in the workspace: nothing stored, nothing raised
        sightings.wait()
        with db.transaction(engine) as s:
            assert s.get(Person, "U0NOBODY001") is None
    finally:
        chat.gate.set()
        sightings.close()


# -- the migration ---------------------------------------------------------------------------


def test_the_migration_moves_mentions_out_of_timeline_summaries_and_back(cli, database_url):
    code, _, err = cli("incident", "declare", "RPC p99 above 2s")
    assert (code, err) == (0, "")
    code, out, err = cli("db", "downgrade", "0015")
    assert (code, err) == (0, ""), out
    engine = db.make_engine(database_url)
    old = [
        ("slack.invited", f"Invited <@{BOB}>, <@U0ALICE0001>", {"users": [BOB, "U0ALICE0001"]}),
        ("runbook.approval", f"<@{BOB}> approved runbook failover-rpc", {"run_id": 2}),
        ("note", "asked <@U0CAROL001|carol> to look", {}),
    ]
    try:
        with engine.begin() as conn:
            for i, (kind, summary, data) in enumerate(old):
                conn.execute(
                    sa.text(
                        "INSERT INTO timeline_event (incident_id, occurred_at, recorded_at, kind,"
                        " actor, summary, data) VALUES (1, :at, :at, :kind, :actor, :summary,"
                        " :data)"
                    ),
                    {
                        "at": NOW + timedelta(minutes=i),
                        "kind": kind,
                        "actor": BOB,
                        "summary": summary,
                        "data": json.dumps(data),
                    },
                )
        code, out, err = cli("db", "upgrade")
        assert (code, err) == (0, ""), out

        def rows() -> list[tuple[str, dict]]:
            with db.transaction(engine) as s:
                events = svc.timeline(s, svc.get(s, "INC-1"))
                return [(e.summary, e.data) for e in events if e.actor == BOB]

        upgraded = rows()
        assert upgraded == [
            (f"Invited {BOB}, U0ALICE0001", {"users": [BOB, "U0ALICE0001"]}),
            (f"{BOB} approved runbook failover-rpc", {"run_id": 2, "people": [BOB]}),
            ("asked U0CAROL001 to look", {"people": ["U0CAROL001"]}),
        ]
        _cache(engine, (BOB, "bob", "Bob Okafor", None))
        code, out, _ = cli("timeline", "INC-1")
        assert code == 0
        assert "<@" not in out and BOB not in out
        assert "Invited Bob Okafor, U0ALICE0001" in out  # an unknown id stays itself

        # Back down: the older code's mentions are written back; up again: the same rows.
        code, out, err = cli("db", "downgrade", "0015")
        assert (code, err) == (0, ""), out
        with engine.connect() as conn:
            summaries = conn.execute(
                sa.text("SELECT summary FROM timeline_event WHERE actor = :bob"), {"bob": BOB}
            ).scalars()
            assert sorted(summaries) == sorted(
                [
                    f"Invited <@{BOB}>, <@U0ALICE0001>",
                    f"<@{BOB}> approved runbook failover-rpc",
                    "asked <@U0CAROL001> to look",
                ]
            )
        code, out, err = cli("db", "upgrade")
        assert (code, err) == (0, ""), out
        assert rows() == upgraded
    finally:
        engine.dispose()


# -- a Slack-run incident, read everywhere ----------------------------------------------------


def test_outputs_of_a_slack_run_incident_name_people_never_their_slack_ids(
    engine, cli, monkeypatch
):
    alice_cli = {"name": "Alice Moreau", "email": "alice@nodeworks.example", "cli": ["amoreau"]}
    with running_bot(engine, people=[alice_cli]) as (bot, slack):
        ws = slack.workspace
        ids = {n: ws.user(n).id for n in ("alice", "bob", "carol")}
        ack = slack.driver.slash_command("declare sev2 RPC nodes lagging behind head")
        assert ack.status == 200
        ch = channel_of(engine)
        for text, user in [
            (f"assign commander <@{ids['bob']}>", "alice"),
            (f"assign scribe <@{ids['carol']}>", "bob"),
            ("note geth on rpc-2 is 40 blocks behind", "carol"),
            ("resolve failed over to rpc-3", "bob"),
        ]:
            ack = slack.driver.slash_command(text, user=user, channel=ch)
            assert ack.status == 200, ack.body
        settled(engine)
        assert bot.sightings is not None
        bot.sightings.wait()  # the people the bot saw, looked up after the answers
        with db.transaction(engine) as s:
            known = {p.user_id: p.real_name for p in s.exec(select(Person))}
            events = svc.timeline(s, svc.get(s, "INC-1"))
        assert known == {
            ids["alice"]: "Alice Moreau",
            ids["bob"]: "Bob Okafor",
            ids["carol"]: "Carol Nguyen",
        }
        invited = [e for e in events if e.kind == "responders.invited"]
        assert invited and invited[0].summary.startswith("Invited U")
        assert all("<@" not in e.summary for e in events)  # the core's text: no Slack markup

    config = Path("people.yaml").absolute()
    config.write_text(yaml.safe_dump({"people": [alice_cli]}))
    monkeypatch.setenv("INCIDENTBOT_CONFIG", str(config))
    code, out, err = cli("incident", "note", "INC-1", "postmortem owner picked", "--as", "amoreau")
    assert (code, err) == (0, "")

    outputs = {}
    for argv in [
        ("incident", "list", "--all"),
        ("incident", "show", "INC-1"),
        ("timeline", "INC-1"),
        ("postmortem", "render", "INC-1", "--format", "md"),
        ("postmortem", "render", "INC-1", "--format", "html"),
    ]:
        code, out, err = cli(*argv)
        assert code == 0, (argv, err)
        outputs[" ".join(argv)] = out
    for name, out in outputs.items():
        for user, user_id in ids.items():
            assert user_id not in out, f"{name} shows {user}'s Slack id {user_id}"
    show = outputs["incident show INC-1"]
    assert "Declared by: Alice Moreau" in show
    assert "commander=Bob Okafor" in show and "scribe=Carol Nguyen" in show
    assert "Bob Okafor" in outputs["incident list --all"]
    timeline = outputs["timeline INC-1"]
    assert "Carol Nguyen" in timeline and "Bob Okafor" in timeline
    # The CLI user amoreau is Alice: her note is hers, by name.
    note = next(line for line in timeline.splitlines() if "postmortem owner picked" in line)
    assert "Alice Moreau" in note
    md = outputs["postmortem render INC-1 --format md"]
    assert "Alice Moreau" in md and "Bob Okafor" in md and "Carol Nguyen" in md


def test_the_handoff_matches_pagerduty_users_to_people_by_email(engine, tmp_path):
    from incidentbot.handoff import service as handoff
    from incidentbot.sandbox.pagerduty.server import PagerDutySandbox
    from tests.test_handoff import NOW, pager, rotation_config, schedule_id

    with PagerDutySandbox() as pd:
        # Bob is in the settings with his Slack id; Carol was met in Slack (cached, by email).
        bob_entry = {"name": "Bob Okafor", "email": "bob@nodeworks.example", "slack": BOB}
        settings = Settings(
            data_dir=tmp_path / "data",
            handoff=rotation_config(schedule_id(pd)),
            people=[bob_entry],
        )
        _cache(engine, ("U0CAROL001", "carol", "Carol Nguyen", "Carol@NodeWorks.example"))
        rotation = settings.handoff.rotation("rpc")
        # No Slack connection at all: the directory alone knows who PagerDuty's people are.
        # At a fixed time (the shift ending Monday 6 May 2024: Carol hands over to Bob), never
        # the wall clock's, whose week decides who is on call.
        h = handoff.build(engine, settings, rotation, pager=pager(pd), chat=None, now=NOW)
    assert [(p.name, p.slack_id) for p in h.outgoing] == [("Carol Nguyen", "U0CAROL001")]
    assert h.incoming_ids == [BOB]
    assert "*Outgoing:* <@U0CAROL001>  →  *Incoming:* <@U0N581U33XT>" in handoff.render(h)


def test_the_action_item_report_counts_one_owner_per_human(
    cli, database_url, tmp_path, monkeypatch
):
    from incidentbot.action_items import service as items

    config = tmp_path / "people.yaml"
    config.write_text(yaml.safe_dump({"people": [{**BOB_ENTRY, "slack": BOB}]}))
    monkeypatch.setenv("INCIDENTBOT_CONFIG", str(config))
    code, _, err = cli("incident", "declare", "RPC p99 above 2s")
    assert (code, err) == (0, "")
    engine = db.make_engine(database_url)
    try:
        _cache(engine, (BOB, "bob", "Bob Okafor", "bob@nodeworks.example"))
        settings = Settings(people=[{**BOB_ENTRY, "slack": BOB}])
        with db.transaction(engine) as s:
            # The same human, as Slack, the CLI and a typed name stored them; and someone else.
            for owner in (BOB, "bob", "Bob Okafor", "carol"):
                items.add(
                    s, settings, "INC-1", f"follow-up for {owner}", actor="alice", owner=owner
                )
    finally:
        engine.dispose()
    code, out, err = cli("actions", "report")
    assert (code, err) == (0, "")
    owners = [line for line in out.splitlines() if "Bob Okafor" in line or "carol" in line]
    assert len(owners) == 2, out
    bob_row = next(line for line in owners if "Bob Okafor" in line)
    assert " 3 " in bob_row and BOB not in out
    code, out, _ = cli("actions", "report", "--json")
    by_owner = {t["owner"]: t["open"] for t in json.loads(out)["by_owner"]}
    assert by_owner == {BOB: 3, "carol": 1}


def test_a_github_issue_names_the_owner_with_their_login(engine):
    from incidentbot.action_items import github
    from tests.github_responder import github_responder
    from tests.test_action_items_github import REPO, TOKEN, _incident_with_item, _settings

    _cache(engine, (BOB, "bob", "Bob Okafor", "bob@nodeworks.example"))
    with github_responder(token=TOKEN, repo=REPO) as gh:
        item_id = _incident_with_item(engine, owner=BOB)
        settings = _settings(gh, people=[BOB_ENTRY])  # joined to the Slack user by email
        github.export(engine, settings, item_id, actor="dana")
        (request,) = gh.requests
    body = request.body["body"]
    assert "| Owner | Bob Okafor (@bob-ok) |" in body
    assert BOB not in body


def test_runs_show_names_who_started_and_cancelled_a_run(cli, database_url):
    from incidentbot import ledger
    from incidentbot.ledger import control

    engine = db.make_engine(database_url)
    try:
        _cache(engine, (BOB, "bob", "Bob Okafor", None))
        with db.transaction(engine) as s:
            run = ledger.start_run(
                s,
                kind="test",
                key="people-1",
                steps=[{"name": "noop", "action": "ledger.noop"}],
                actor=BOB,
                target="rpc-2",
            )
            assert run.id is not None
            control.cancel(s, run.id, actor="slack:" + BOB, reason="wrong node")
    finally:
        engine.dispose()
    code, out, err = cli("runs", "show", str(run.id))
    assert (code, err) == (0, "")
    assert "Started by: Bob Okafor" in " ".join(out.split())
    assert "requested by Bob Okafor" in out
    assert BOB not in out


def test_a_cli_refusal_names_the_people_it_names(cli, database_url, tmp_path, monkeypatch):
    from tests.test_runbook_e2e import write_runbooks

    engine = db.make_engine(database_url)
    try:
        _cache(engine, (BOB, "bob", "Bob Okafor", None))
    finally:
        engine.dispose()
    folder = write_runbooks(tmp_path, approval="none")
    access = [{"runbooks": ["restart-*"], "users": [BOB, "dana"]}]
    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__DIRS", json.dumps([str(folder)]))
    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__ACCESS", json.dumps(access))
    monkeypatch.setenv("INCIDENTBOT_PEOPLE", json.dumps([DANA_ENTRY]))
    code, out, err = cli(
        "runbook", "run", "restart-node", "node=rpc-1", "url=http://127.0.0.1:9", "--as", "alice"
    )
    assert code == 1, out + err
    assert "runbooks.access allows only Bob Okafor, Dana Reyes" in err
    assert BOB not in err


def test_a_refusal_the_cli_passes_on_names_the_people_it_names(
    cli, database_url, tmp_path, monkeypatch
):
    from tests.egress_support import LOOPBACK
    from tests.test_runbook_e2e import write_runbooks

    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__EGRESS", json.dumps(LOOPBACK))
    engine = db.make_engine(database_url)
    try:
        _cache(engine, (BOB, "bob", "Bob Okafor", None))
    finally:
        engine.dispose()
    write_runbooks(tmp_path, approval="commander")
    code, out, err = cli("incident", "declare", "RPC", "down", "--commander", BOB)
    assert code == 0, out + err
    code, out, err = cli(
        "runbook", "run", "restart-node", "node=rpc-2", "url=http://127.0.0.1:9", "-i", "INC-1",
        "--detach", "--as", "alice",
    )  # fmt: skip
    assert code == 0, out + err
    run_id = re.search(r"Run (\d+)", out).group(1)  # type: ignore[union-attr]
    code, out, err = cli("runs", "cancel", run_id, "--as", "carol")
    assert code == 1, out + err
    assert "only the incident commander (Bob Okafor) may cancel runs of restart-node" in err
    assert BOB not in err
