"""``/incident postmortem`` from Slack: the bot and the local Slack server over real sockets.
Names are looked up with users.info into the person table; the channel gets the summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.people import Directory
from incidentbot.people import lookup as people
from incidentbot.people.models import Person
from incidentbot.postmortems import lifecycle
from incidentbot.sandbox.slack.server import SlackSandbox
from incidentbot.slack.chat import SlackChat
from incidentbot.slack.grammar import Command, Usage, help_text, parse
from tests.slack_harness import (
    PATIENT_ACK_S,
    assert_spec_conformance,
    channel_of,
    running_bot,
    settled,
    timeline_kinds,
    wait_for,
)
from tests.test_postmortem_browser import SECTIONS as BROWSER_SECTIONS
from tests.test_postmortem_browser import Outline, chromium, png_pixels, run_chromium


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body) if ack.body else {}


def stored_people(engine) -> dict[str, tuple[str, str | None]]:
    with db.transaction(engine) as s:
        return {p.user_id: (p.name, p.real_name) for p in s.exec(select(Person))}


def test_postmortem_in_the_channel(engine):
    with running_bot(engine) as (_bot, slack):
        ws = slack.workspace
        alice, bob = ws.user("alice").id, ws.user("bob").id
        reply(slack.driver.slash_command("declare sev1 Validators miss attestations"))
        ch = channel_of(engine)
        reply(slack.driver.slash_command(f"assign commander <@{bob}>", channel=ch))
        reply(slack.driver.slash_command("resolve restarted the beacon node", channel=ch))
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            lifecycle.edit_section(
                s,
                _bot.settings,
                inc,
                "what_went_wrong",
                f"<@{bob}> forgot to renew the signer's certificate.",
                actor=alice,
                now=datetime.now(UTC),
            )
        # The bot looked up the people it saw (who typed, whom they mentioned) after answering.
        _bot.sightings.wait()
        assert set(stored_people(engine)) == {alice, bob}

        body = reply(slack.driver.slash_command("postmortem", user="bob", channel=ch))
        assert body["response_type"] == "in_channel"
        text = body["text"]
        assert text.startswith(
            ":memo: *INC-1 postmortem*: Draft · required by the SEV1 policy · due "
        )
        assert "owner Bob Okafor" in text  # from users.info, not the id
        assert "*Summary:* restarted the beacon node" in text
        assert "*Written:* 1 of 9 sections (to write: summary, impact, trigger, detection" in text
        assert ":warning: *Language check*: 2 passages may read as blaming people:" in text
        assert "• What went wrong, line 1: “@Bob Okafor forgot”: names a person" in text
        assert (
            "`incidentbot postmortem render INC-1 --format html --out INC-1-postmortem.html`"
            in (text)
        )
        known = stored_people(engine)
        assert known[alice] == ("alice", "Alice Moreau")
        assert known[bob] == ("bob", "Bob Okafor")
        # the in-channel answer is a message everyone in the channel sees
        wait_for(
            lambda: any("INC-1 postmortem" in m.text for m in ws.channel(ch).messages),
            what="the summary in the channel",
        )

        body = reply(slack.driver.slash_command("postmortem"))  # not an incident channel
        assert body["text"].startswith("`/incident postmortem` only works in an incident's")
        body = reply(slack.driver.slash_command("postmortem now", channel=ch))
        assert body["text"].startswith(
            "Unknown postmortem subcommand `now`: use edit, status or publish.\nUsage: "
        )
        assert_spec_conformance(slack)


def test_the_grammar_knows_postmortem():
    settings = Settings()
    assert parse("postmortem", settings=settings, in_incident_channel=True) == Command("postmortem")
    refused = parse("postmortem", settings=settings, in_incident_channel=False)
    assert isinstance(refused, Usage)
    assert "only works in an incident's channel" in refused.error
    shown = help_text(in_incident_channel=True)
    assert "• `/incident postmortem [edit [section] | status &lt;draft|" in shown
    assert "`: the postmortem draft: summary, language check; write a section" in shown


@pytest.fixture
def sandbox():
    with SlackSandbox(ack_timeout=PATIENT_ACK_S) as sb:
        yield sb


def test_name_lookups_are_bounded_and_cached(engine, sandbox):
    chat = SlackChat(sandbox.bot_token, base_url=sandbox.base_url)
    ws = sandbox.workspace
    ids = [ws.user(n).id for n in ("alice", "bob", "carol")]
    now = datetime.now(UTC)
    assert people.refresh(engine, chat, ids, now=now, limit=2) == 2
    assert len(stored_people(engine)) == 2
    assert people.refresh(engine, chat, [*ids, "alice", "incidentbot"], now=now) == 1
    assert people.refresh(engine, chat, ids, now=now) == 0  # fresh: Slack is not asked again
    assert people.refresh(engine, chat, ["U0NOBODY"], now=now) == 0  # user_not_found
    with db.transaction(engine) as s:
        names = Directory.load(s, [], [*ids, "slack:" + ids[0], "U0NOBODY", "dana"])
    assert names(ids[2]) == "Carol Nguyen"
    assert names("slack:" + ids[0]) == "Alice Moreau"
    assert names("U0NOBODY") == "U0NOBODY"
    assert names("dana") == "dana"


def _open_views(slack, callback: str = "postmortem_edit") -> list:
    """The open forms of one kind (the resolve opens its own, asking when impact started)."""
    return [
        v
        for v in slack.workspace.views.values()
        if v.is_open and v.data.get("callback_id") == callback
    ]


def _section(engine, key: str, ref: str = "INC-1") -> str | None:
    with db.transaction(engine) as s:
        row = lifecycle.find(s, svc.get(s, ref))
        return None if row is None else (row.sections or {}).get(key)


def test_edit_a_section_in_a_form_then_review_and_publish(engine, tmp_path):
    with running_bot(engine, postmortems={"publish_dir": str(tmp_path / "pm")}) as (_bot, slack):
        ws = slack.workspace
        reply(slack.driver.slash_command("declare sev1 Validators miss attestations"))
        ch = channel_of(engine)
        reply(slack.driver.slash_command("resolve restarted the beacon node", channel=ch))
        slack.driver.join_channel("bob", ch)  # confirmations are ephemeral: members only

        def run(text, user="bob", channel=ch):
            return reply(slack.driver.slash_command(text, user=user, channel=channel))

        body = run("postmortem edit wrong")
        assert body == {
            "text": "Opening what went wrong of the INC-1 postmortem…",
            "response_type": "ephemeral",
        }
        view = wait_for(lambda: _open_views(slack), what="the form")[0]
        block = view.data["blocks"][0]
        assert block["label"]["text"] == "What went wrong"
        assert "initial_value" not in block["element"]  # nothing written yet
        text = "The signer's certificate expired; xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp"
        ack = slack.driver.view_submission(view.id, {"text": text}, user="bob")
        assert ack.status == 200 and not reply(ack).get("errors")
        assert _section(engine, "what_went_wrong") == "The signer's certificate expired; ***"
        told = wait_for(
            lambda: [e.text for e in slack.ephemeral("bob") if e.text.startswith("Saved")],
            what="the confirmation",
        )
        assert told == ["Saved what went wrong in the INC-1 postmortem (37 characters, Draft)."]

        # The form opens with what is written, to be changed (or emptied: cleared).
        run("postmortem edit what_went_wrong")
        view = wait_for(lambda: _open_views(slack), what="the second form")[0]
        element = view.data["blocks"][0]["element"]
        assert element["initial_value"] == "The signer's certificate expired; ***"
        ack = slack.driver.view_submission(view.id, {"text": "Bob forgot to renew it."})
        assert not reply(ack).get("errors")
        warned = wait_for(
            lambda: [e.text for e in slack.ephemeral("bob") if "Language check" in e.text],
            what="the language check",
        )
        assert warned[0].startswith(
            "Saved what went wrong in the INC-1 postmortem (23 characters, Draft).\n"
            # Bob is someone the people directory knows: naming him next to a failure is
            # flagged as well as the failure itself.
            ":warning: *Language check*: 2 passages may read as blaming people:\n"
            "• What went wrong, line 1: “Bob forgot”: names a person next to a failure"
        ), warned
        assert "• What went wrong, line 1: “forgot to”: describe the step" in warned[0]

        body = run("postmortem status review")
        assert body["response_type"] == "in_channel"
        bob = ws.user("bob").id
        assert body["text"] == f":memo: <@{bob}> moved the *INC-1 postmortem*: draft → *in review*"
        run("postmortem edit lucky")
        view = wait_for(lambda: _open_views(slack), what="the third form")[0]
        body = run("postmortem publish")
        assert body["response_type"] == "in_channel"
        md = tmp_path / "pm" / "INC-1-postmortem.md"
        assert body["text"].startswith(
            f":memo: <@{bob}> published the *INC-1 postmortem*: `{md}` (and the `.html` beside it)"
        )
        assert md.read_text().startswith("# Postmortem: INC-1 Validators miss attestations")
        assert (tmp_path / "pm" / "INC-1-postmortem.html").exists()
        # A form opened before publishing is refused on submission, in the form.
        ack = slack.driver.view_submission(view.id, {"text": "the quiet hour"})
        assert "is published: move it back to in_review" in reply(ack)["errors"]["text"]
        assert _section(engine, "where_we_got_lucky") is None
        assert (
            "published the *INC-1 postmortem* again" in run("postmortem status published")["text"]
        )

        kinds = [k for k in timeline_kinds(engine) if k.startswith("postmortem.")]
        assert kinds == [
            "postmortem.edited", "postmortem.edited", "postmortem.status", "postmortem.status",
            "postmortem.status",
        ]  # fmt: skip
        assert_spec_conformance(slack)


def test_postmortem_refusals_change_nothing(engine):
    with running_bot(engine) as (_bot, slack):
        reply(slack.driver.slash_command("declare sev1 Validators miss attestations"))
        ch = channel_of(engine)

        def run(text):
            return reply(slack.driver.slash_command(text, user="bob", channel=ch))

        settled(engine)  # the declare's channel, invitations and announcement are done
        before = len(timeline_kinds(engine))
        for text, message in (
            ("postmortem edit luck of the draw", "Unknown section 'luck of the draw': allowed"),
            ("postmortem status", "`postmortem status` needs a status: draft, in_review"),
            ("postmortem status done", "Unknown postmortem status 'done': allowed are draft"),
            ("postmortem status in_review",
             "INC-1 is triage: resolve it before its postmortem goes to in review."),
            ("postmortem publish now", "`postmortem publish` takes no arguments."),
            ("postmortem publish", "The INC-1 postmortem is a draft: move it to review first"),
            ("postmortem frobnicate", "Unknown postmortem subcommand `frobnicate`"),
        ):  # fmt: skip
            body = run(text)
            assert body["response_type"] == "ephemeral", text
            assert body["text"].startswith(message), (text, body["text"])
            assert "\nUsage: /incident postmortem" in body["text"], text
        assert len(timeline_kinds(engine)) == before
        assert not _open_views(slack)
        with db.transaction(engine) as s:
            assert lifecycle.find(s, svc.get(s, "INC-1")) is None
        # A section longer than a Slack form holds is not cut short in a form.
        with db.transaction(engine) as s:
            lifecycle.edit_section(s, _bot.settings, svc.get(s, "INC-1"), "well", "ok. " * 900,
                                   actor="carol", now=datetime.now(UTC))  # fmt: skip
        body = run("postmortem edit well")
        assert body["text"].startswith(
            "What went well is 3599 characters long, more than a Slack form holds (3000): edit "
            "it with `incidentbot postmortem edit INC-1 --section what_went_well --file FILE`."
        ), body["text"]
        assert not _open_views(slack)


SECTION_TEXTS = {
    "summary": "Attestations were missed for 40 minutes after the beacon node fell behind.",
    "impact": "- validators affected: 64\n- missed slots: 12\n- degraded service: 40 minutes",
    "trigger": "A client upgrade changed the default peer limit.",
    "detection": "A responder saw the missed attestations on the dashboard and declared it.",
    "resolution": "The beacon node was restarted with the old peer limit and caught up.",
    "what_went_well": "The restart runbook worked on the first try.",
    "what_went_wrong": "The upgrade notes did not mention the peer limit.",
    "where_we_got_lucky": "The epoch was quiet.",
    "contributing_factors": "No alert on the peer count; the upgrade went out on a Friday.",
}


IMPACT_INPUTS = {
    "impact_requests_failed": "1200",
    "impact_validators_affected": "4",
    "impact_degraded": "40m",
    "impact_missed_slots": "12",
}


def test_an_incident_run_only_in_slack_publishes_a_complete_postmortem(engine, tmp_path):
    with running_bot(engine, postmortems={"publish_dir": str(tmp_path / "pm")}) as (_bot, slack):
        ws = slack.workspace
        reply(slack.driver.slash_command("declare sev1 Validators miss attestations"))
        ch = channel_of(engine)
        slack.driver.join_channel("bob", ch)

        def run(text, user="bob"):
            return reply(slack.driver.slash_command(text, user=user, channel=ch))

        run("status monitoring")
        body = run("resolve restarted the beacon node with the old peer limit")
        assert body["text"].startswith(":white_check_mark: ") and "resolved *INC-1*" in body["text"]
        # No one said when the impact started: the resolve asks, in a form.
        asked = wait_for(lambda: _open_views(slack, "resolve_impact_started"), what="the ask")[0]
        assert asked.data["close"]["text"] == "Skip"
        ack = slack.driver.view_submission(asked.id, {"when": "half an hour-ish"}, user="bob")
        assert "is not a time: use 20m ago, 14:05" in reply(ack)["errors"]["when"]
        with db.transaction(engine) as s:
            assert svc.get(s, "INC-1").impact_started_at is None  # nothing recorded
        with db.transaction(engine) as s:
            declared = svc.get(s, "INC-1").declared_at
        when = (declared - timedelta(minutes=20)).isoformat()  # as typed: 2026-…T…+00:00
        ack = slack.driver.view_submission(asked.id, {"when": when}, user="bob")
        assert not reply(ack).get("errors")
        told = wait_for(
            lambda: [e.text for e in slack.ephemeral("bob") if e.text.startswith("Recorded")],
            what="the confirmation",
        )
        assert "the impact of *INC-1* started at " in told[0]
        assert "(given at resolve). Time to detect 20m 00s · acknowledge " in told[0], told[0]
        for key, text in SECTION_TEXTS.items():
            before = len(_open_views(slack))
            run(f"postmortem edit {key}")
            view = wait_for(
                lambda n=before: _open_views(slack)[n:] or None, what=f"the {key} form"
            )[0]
            inputs = {"text": text}
            if key == "impact":  # the numbers, each in its own input
                # Slack's client itself refuses a decimal or a negative count in a number input
                for wrong in ("2.5", "-1"):
                    with pytest.raises(ValueError, match="number input 'Missed slots'"):
                        slack.driver.view_submission(view.id, {"impact_missed_slots": wrong})
                bad = {**inputs, "impact_degraded": "forty minutes", "impact_missed_slots": "3"}
                errors = reply(slack.driver.view_submission(view.id, bad, user="bob"))["errors"]
                assert errors == {
                    "impact_degraded": "Degraded service 'forty minutes' is not a duration: "
                    "e.g. 40m or 1h30m",
                }
                assert _section(engine, "impact") is None  # nothing saved
                inputs.update(IMPACT_INPUTS)
            ack = slack.driver.view_submission(view.id, inputs, user="bob")
            assert ack.status == 200 and not reply(ack).get("errors")
            assert _section(engine, key) == text
        body = run("postmortem")  # looks the people up, as anyone reading it in Slack does
        assert (
            "*Impact:* requests failed 1,200 · validators affected 4 · degraded service 40m 00s"
            " · missed slots 12\n" in body["text"]
        ), body["text"]
        run("postmortem status review")
        body = run("postmortem publish")
        assert "published the *INC-1 postmortem*" in body["text"]
        md = (tmp_path / "pm" / "INC-1-postmortem.md").read_text()
        page = (tmp_path / "pm" / "INC-1-postmortem.html").read_text()

    metrics = md.split("## Metrics", 1)[1].split("## Participants", 1)[0]
    for label in ("Time to detect", "Time to acknowledge", "Time to mitigate", "Time to resolve"):
        row = next(line for line in metrics.splitlines() if line.startswith(f"| {label} |"))
        assert "unknown" not in row and "out of order" not in row, row
    started = next(line for line in md.splitlines() if line.startswith("| Impact started |"))
    assert started.endswith("| given at resolve by Bob Okafor |"), started  # where it came from
    detect = next(line for line in metrics.splitlines() if line.startswith("| Time to detect |"))
    assert "| 20m 00s | impact started: given at resolve by Bob Okafor; detected: " in detect
    impact = md.split("## Impact", 1)[1].split("## Trigger", 1)[0]
    for label, value in (("Requests failed", "1,200"), ("Validators affected", "4"),
                         ("Degraded service", "40m 00s"), ("Missed slots", "12")):  # fmt: skip
        assert f"| {label} | {value} | typed by Bob Okafor at " in impact, (label, impact)
        assert f'<tr><td>{label}</td><td>{value}</td><td class="muted">typed by Bob' in page
    assert "*Numbers not given:* users affected, blocks behind:" in impact
    for key, text in SECTION_TEXTS.items():
        title = lifecycle.SECTIONS[lifecycle.SECTION_KEYS.index(key)].title
        assert f"\n## {title}\n" in md and f"<h2>{title}</h2>" in page
        assert text.splitlines()[0] in md
    assert "Not written yet" not in md
    assert "No blaming language found in what people wrote and the timeline quotes." in md
    for user in ws.users.values():
        assert user.id not in md and user.id not in page, user.id

    # Chromium renders the published page: every section, and a screenshot kept beside it.
    binary = chromium()
    html = tmp_path / "pm" / "INC-1-postmortem.html"
    profile = tmp_path / "chromium-profile"
    outline = Outline()
    outline.feed(run_chromium(binary, profile, "--dump-dom", html.as_uri()).stdout)
    assert outline.sections == BROWSER_SECTIONS
    shown = " ".join(" ".join(outline.text).split())
    assert "validators affected: 64" in shown and "Bob" in shown
    png = tmp_path / "INC-1-postmortem.png"  # the test's artifact
    run_chromium(binary, profile, "--window-size=1200,3000", f"--screenshot={png}", html.as_uri())
    width, height, raw = png_pixels(png.read_bytes())
    assert (width, height) == (1200, 3000)
    assert len(set(raw[: len(raw) // 2])) > 16, "the screenshot is (nearly) one colour"
