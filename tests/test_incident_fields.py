"""An incident field set or cleared after the declare (the validators affected, the chain):
``/incident field`` in Slack and ``incidentbot incident field`` in the CLI reach one use case,
which checks the value by the configured policy as at declare, says the old and the new value
on the timeline and refreshes the pinned header. A refusal says why and changes nothing."""

from __future__ import annotations

import json

import pytest

from incidentbot import db
from incidentbot.incidents import service as svc
from tests.conftest import count
from tests.slack_harness import channel_of, incident, running_bot, settled, wait_for

FIELDS = [
    {"name": "chain", "label": "Chain", "allowed": ["ethereum", "gnosis"]},
    {"name": "validators", "label": "Validators"},
]


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body)


def changes(engine) -> list[tuple[str, dict]]:
    with db.transaction(engine) as s:
        events = svc.timeline(s, svc.get(s, "INC-1"))
        return [(e.summary, e.data) for e in events if e.kind == "field.changed"]


def test_slack_sets_and_clears_the_validators_affected_and_the_header_follows(engine):
    with running_bot(engine, fields=FIELDS) as (_bot, slack):
        body = reply(
            slack.driver.slash_command(
                "declare sev1 Validators missing attestations", user="alice", channel="incidents"
            )
        )
        assert "declared *INC-1*" in body["text"]
        ch = channel_of(engine)

        def run(text: str) -> dict:
            return reply(slack.driver.slash_command(text, user="bob", channel=ch))

        settled(engine)
        before = count(engine, "timeline_event")
        for text, message in [
            ("field", "`field` needs a field (chain, validators)"),
            ("field validators", "`field validators` needs a value, or --clear"),
            ("field colour blue", "Unknown field 'colour': allowed are chain, validators"),
            ("field chain solana", "'solana' is not an allowed chain: allowed are ethereum"),
            ("field validators --clear", "INC-1 has no validators to clear"),
        ]:
            body = run(text)
            assert body["response_type"] == "ephemeral", text
            assert body["text"].startswith(message), (text, body["text"])
        assert count(engine, "timeline_event") == before  # nothing changed

        body = run("field validators 6-7")
        assert body["response_type"] == "in_channel"
        assert "set *Validators* to `6-7` (was unset)" in body["text"]
        assert "set *Chain* to `ethereum`" in run("field chain ethereum")["text"]
        assert run("field validators 6-7")["text"].startswith("INC-1's validators already is")
        # A value that looks like markup stays text in the reply.
        hostile = run("field validators <!channel> 4-7")
        assert "<!channel>" not in hostile["text"] and "&lt;!channel&gt;" in hostile["text"]
        assert "(was `6-7`)" in hostile["text"]
        assert (
            "cleared *Validators* (was `&lt;!channel&gt; 4-7`)"
            in run("field validators --clear")["text"]
        )
        assert "set *Validators* to `4-7,12`" in run("field validators 4-7,12")["text"]

        assert incident(engine).fields == {"chain": "ethereum", "validators": "4-7,12"}
        assert changes(engine) == [
            ("Validators: (unset) → 6-7", {"field": "validators", "from": None, "to": "6-7"}),
            ("Chain: (unset) → ethereum", {"field": "chain", "from": None, "to": "ethereum"}),
            (
                "Validators: 6-7 → <!channel> 4-7",
                {"field": "validators", "from": "6-7", "to": "<!channel> 4-7"},
            ),
            (
                "Cleared Validators (was <!channel> 4-7)",
                {"field": "validators", "from": "<!channel> 4-7", "to": None},
            ),
            ("Validators: (unset) → 4-7,12", {"field": "validators", "from": None, "to": "4-7,12"}),
        ]
        header = wait_for(
            lambda: next(
                (
                    p.text
                    for p in slack.snapshot(ch).pinned
                    if "validators: 4-7,12" in p.text and "chain: ethereum" in p.text
                ),
                None,
            ),
            what="the pinned header with the fields",
        )
        assert "<!channel>" not in header and len(slack.snapshot(ch).pinned) == 1
        # Only in the incident's channel.
        elsewhere = reply(
            slack.driver.slash_command("field validators 1", user="bob", channel="incidents")
        )
        assert "only works in an incident's channel" in elsewhere["text"]


@pytest.fixture
def with_fields(cli, tmp_path, monkeypatch):
    config = tmp_path / "cli.yml"
    required = [{**FIELDS[0], "required": True}, FIELDS[1]]
    config.write_text(json.dumps({"fields": required}))
    monkeypatch.setenv("INCIDENTBOT_CONFIG", str(config))
    return cli


def test_cli_sets_and_clears_a_field_and_refuses_clearly(with_fields, engine):
    cli = with_fields
    code, _, err = cli("incident", "declare", "--field", "chain=ethereum", "Missed attestations")
    assert code == 0, err
    code, out, err = cli("incident", "field", "INC-1", "validators", "4-7,12")
    assert (code, out.strip()) == (0, "INC-1: validators is now 4-7,12 (was unset)"), err
    events = count(engine, "timeline_event")
    for argv, message in [
        (("validators",), "give a value or --clear (not both)"),
        (("validators", "1", "--clear"), "give a value or --clear (not both)"),
        (("chain", "solana"), "'solana' is not an allowed chain"),
        (("chain", "--clear"), "chain is a required field"),
        (("weather", "fine"), "unknown field 'weather'"),
    ]:
        code, _, err = cli("incident", "field", "INC-1", *argv)
        assert code != 0 and message in err, (argv, err)
    assert count(engine, "timeline_event") == events
    code, out, _ = cli("incident", "field", "INC-1", "validators", "--clear")
    assert (code, out.strip()) == (0, "INC-1: validators cleared (was 4-7,12)")
    assert incident(engine).fields == {"chain": "ethereum"}
    assert [summary for summary, _ in changes(engine)] == [
        "Validators: (unset) → 4-7,12",
        "Cleared Validators (was 4-7,12)",
    ]
    cli("incident", "resolve", "INC-1", "fixed")
    code, _, err = cli("incident", "field", "INC-1", "validators", "6")
    assert code != 0 and "INC-1 is resolved: cannot change its validators" in err
