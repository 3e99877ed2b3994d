"""Sections a team adds (``postmortems.extra_sections``): written from the CLI and from a Slack
form, stored like the built-in ones, rendered; an unknown section is refused with the list of
known ones, a badly declared one when the settings are read."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.postmortems import lifecycle
from tests.slack_harness import channel_of, running_bot, wait_for

EXTRA = [
    {
        "key": "customer_communication",
        "title": "Customer communication",
        "prompt": "What we told customers, when, and on which channel.",
    },
    {"key": "cost", "title": "Cost"},
]
KNOWN = (
    "allowed are summary, impact, trigger, detection, resolution, what_went_well, "
    "what_went_wrong, where_we_got_lucky, contributing_factors, customer_communication, cost"
)


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ([{"key": "lucky", "title": "Luck"}], "section key 'lucky' is a built-in section"),
        ([{"key": "impact", "title": "Impact again"}], "section key 'impact' is a built-in"),
        ([{"key": "x", "title": "X"}], "2 to 40 lowercase letters, digits or _"),
        ([{"key": "<b>", "title": "X"}], "2 to 40 lowercase letters, digits or _"),
        ([{"key": "cost", "title": "A"}, {"key": "Cost", "title": "B"}], "given twice: cost"),
        ([{"key": "cost", "title": "   "}], "is empty"),
        ([{"key": "cost"}], "title"),
    ],
)
def test_a_badly_declared_section_is_refused_when_the_settings_are_read(declared, message):
    with pytest.raises(ValidationError, match=message):
        Settings(postmortems={"extra_sections": declared})


@pytest.fixture
def team_cli(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("INCIDENTBOT_POSTMORTEMS__EXTRA_SECTIONS", json.dumps(EXTRA))
    assert cli("incident", "declare", "Validators", "offline", "--sev", "1")[0] == 0
    assert cli("incident", "resolve", "INC-1", "restarted", "the", "signer")[0] == 0
    return cli


def test_a_teams_sections_are_written_stored_and_rendered(team_cli, tmp_path):
    text = "Status page updated at 10:05; the two largest stakers were mailed."
    code, out, err = team_cli(
        "postmortem", "edit", "INC-1", "--section", "customer-communication", "--text", text
    )
    assert (code, err) == (0, ""), err
    assert out == "INC-1 postmortem: customer_communication updated (Draft)\n"
    code, md, _ = team_cli("postmortem", "render", "INC-1")
    part = md.split("## Customer communication\n", 1)[1].split("\n## ", 1)[0]
    assert part.strip() == text
    assert "## Cost\n\n*Not written yet.* What your team records as cost." in md
    cost = md.split("## Cost\n", 1)[1].split("\n## ", 1)[0]
    assert "`incidentbot postmortem edit INC-1 --section cost --file FILE`" in cost
    # after the review sections, before the language check
    assert md.index("## Contributing factors") < md.index("## Customer communication")
    assert md.index("## Cost") < md.index("## Language check")
    code, page, _ = team_cli("postmortem", "render", "INC-1", "--format", "html")
    assert '<section id="customer-communication" class="human">' in page
    assert "<h2>Customer communication</h2>" in page and text in page
    # blameless check reads it too
    team_cli("postmortem", "edit", "INC-1", "--section", "cost", "--text", "Human error cost us")
    code, out, _ = team_cli("postmortem", "check", "INC-1")
    assert code == 1 and "cost line 1: “human error”" in out.lower()


def test_an_unknown_section_is_refused_with_the_known_ones(team_cli, database_url):
    code, out, err = team_cli("postmortem", "edit", "INC-1", "--section", "costs", "--text", "x")
    assert code == 1 and out == ""
    assert f"unknown section 'costs': {KNOWN}" in err
    engine = db.make_engine(database_url)
    try:
        with db.transaction(engine) as s:
            row = lifecycle.find(s, svc.get(s, "INC-1"))
            assert row is not None and row.sections == {}
    finally:
        engine.dispose()


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body) if ack.body else {}


def test_a_teams_section_is_edited_in_a_slack_form(engine):
    with running_bot(engine, postmortems={"extra_sections": EXTRA}) as (_bot, slack):
        reply(slack.driver.slash_command("declare sev1 Validators offline"))
        ch = channel_of(engine)
        slack.driver.join_channel("bob", ch)

        def run(text):
            return reply(slack.driver.slash_command(text, user="bob", channel=ch))

        body = run("postmortem edit nope")
        assert body["text"].startswith(f"Unknown section 'nope': {KNOWN}.")
        body = run("postmortem edit customer communication")
        assert body["text"] == "Opening customer communication of the INC-1 postmortem…"
        view = wait_for(
            lambda: [v for v in slack.workspace.views.values() if v.is_open], what="the form"
        )[0]
        block = view.data["blocks"][0]
        assert block["label"]["text"] == "Customer communication"
        assert block["hint"]["text"].startswith("What we told customers, when")
        ack = slack.driver.view_submission(view.id, {"text": "Status page at 10:05."})
        assert not reply(ack).get("errors")
        with db.transaction(engine) as s:
            row = lifecycle.find(s, svc.get(s, "INC-1"))
            assert row is not None
            assert row.sections == {"customer_communication": "Status page at 10:05."}
        body = run("postmortem")
        assert "*Written:* 1 of 11 sections (to write: summary, impact," in body["text"]
        assert "contributing factors, cost)" in body["text"]

        # Without a section: a form to choose one, a team's sections too; choosing one opens
        # its edit form in place.
        body = run("postmortem edit")
        assert body["text"] == "Opening the INC-1 postmortem's sections…"
        picker = wait_for(lambda: _open(slack, "postmortem_pick"), what="the picker")[0]
        options = picker.data["blocks"][0]["element"]["options"]
        assert [o["value"] for o in options][-3:] == [
            "contributing_factors", "customer_communication", "cost",
        ]  # fmt: skip
        assert options[-2]["text"]["text"] == "Customer communication (written)"
        ack = slack.driver.view_submission(picker.id, {"section": "cost"}, user="bob")
        assert reply(ack)["response_action"] == "update"
        form = slack.workspace.views[picker.id]
        assert form.data["callback_id"] == "postmortem_edit"
        assert form.data["blocks"][0]["label"]["text"] == "Cost"
        ack = slack.driver.view_submission(picker.id, {"text": "Two days of an engineer."})
        assert not reply(ack).get("errors")
        with db.transaction(engine) as s:
            row = lifecycle.find(s, svc.get(s, "INC-1"))
            assert row is not None and row.sections["cost"] == "Two days of an engineer."


def _open(slack, callback: str) -> list:
    return [
        v
        for v in slack.workspace.views.values()
        if v.is_open and v.data.get("callback_id") == callback
    ]
