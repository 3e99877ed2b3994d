"""The /incident grammar: what people type, what it means, and what a mistake gets back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from incidentbot.config import Settings
from incidentbot.slack.grammar import Command, Usage, help_text, parse

SETTINGS = Settings(
    pagerduty={
        "services": {n: {"service_id": f"P{n.upper()}"} for n in ("rpc", "validators", "indexer")}
    }
)


def p(text: str, in_channel: bool = True) -> Command | Usage:
    return parse(text, settings=SETTINGS, in_incident_channel=in_channel)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command("help")),
        ("  ", Command("help")),
        ("help", Command("help")),
        ("  HELP   me ", Command("help")),
        (
            "declare sev1 Validators missing attestations",
            Command(
                "declare",
                {
                    "severity": "SEV1",
                    "title": "Validators missing attestations",
                    "service": None,
                    "private": False,
                },
            ),
        ),
        (
            "declare Sevastopol region unreachable",
            Command(
                "declare",
                {
                    "severity": None,
                    "title": "Sevastopol region unreachable",
                    "service": None,
                    "private": False,
                },
            ),
        ),
        (
            "declare SEV2   RPC  p99 above 2s :fire:",
            Command(
                "declare",
                {
                    "severity": "SEV2",
                    "title": "RPC p99 above 2s :fire:",
                    "service": None,
                    "private": False,
                },
            ),
        ),
        (
            "declare sev 3 disk filling on erigon-1",
            Command(
                "declare",
                {
                    "severity": "SEV3",
                    "title": "disk filling on erigon-1",
                    "service": None,
                    "private": False,
                },
            ),
        ),
        (
            "declare “Geth stuck at block 21000000”",
            Command(
                "declare",
                {
                    "severity": None,
                    "title": "Geth stuck at block 21000000",
                    "service": None,
                    "private": False,
                },
            ),
        ),
        (
            "declare",
            Command(
                "declare", {"severity": None, "title": None, "service": None, "private": False}
            ),
        ),
        (
            "declare sev2",
            Command(
                "declare", {"severity": "SEV2", "title": None, "service": None, "private": False}
            ),
        ),
        ("sev 1", Command("sev", {"severity": "SEV1"})),
        ("severity SEV4", Command("sev", {"severity": "SEV4"})),
        ("status Monitoring", Command("status", {"status": "monitoring"})),
        (
            "assign commander <@U024BE7LH|bob>",
            Command("assign", {"role": "commander", "user": "U024BE7LH"}),
        ),
        (
            "assign comms lead <@U0G9QF9C6>",
            Command("assign", {"role": "comms_lead", "user": "U0G9QF9C6"}),
        ),
        ("assign <@U0G9QF9C6> scribe", Command("assign", {"role": "scribe", "user": "U0G9QF9C6"})),
        ("unassign scribe", Command("unassign", {"role": "scribe"})),
        (
            "note see <#C012AB3CD|general> and <https://grafana.example/d/x|dash>",
            Command(
                "note", {"text": "see <#C012AB3CD|general> and <https://grafana.example/d/x|dash>"}
            ),
        ),
        (
            "update 'Failover done, watching error rates'",
            Command("update", {"text": "Failover done, watching error rates"}),
        ),
        (
            "resolve Drained rpc-2 and failed over",
            Command("resolve", {"text": "Drained rpc-2 and failed over"}),
        ),
        ("reopen", Command("reopen")),
        ("roles", Command("roles")),
        ("timeline", Command("timeline")),
        ("summary", Command("summary")),
        ("list", Command("list")),
        (
            "declare sev1 service:validators Missed attestations",
            Command(
                "declare",
                {
                    "severity": "SEV1",
                    "title": "Missed attestations",
                    "service": "validators",
                    "private": False,
                },
            ),
        ),
        ("page rpc geth is stuck", Command("page", {"service": "rpc", "message": "geth is stuck"})),
        ("page RPC", Command("page", {"service": "rpc", "message": None})),
        ("oncall", Command("oncall", {"service": None})),
        ("alerts", Command("alerts", {"unmatched": False})),
        ("alerts Unmatched", Command("alerts", {"unmatched": True})),
        ("oncall indexer", Command("oncall", {"service": "indexer"})),
        ("ls", Command("list")),
    ],
)
def test_commands(text, expected):
    assert p(text) == expected


SEVS = "(SEV1, SEV2, SEV3, SEV4)"
MALFORMED = [
    ("frobnicate", True, "Unknown subcommand `frobnicate`.", "try `/incident help`"),
    (
        "declare sev9 Nodes down",
        True,
        "Unknown severity 'sev9': allowed are SEV1, SEV2, SEV3, SEV4.",
        "/incident declare [sev1..sev4] <title>",
    ),
    ("declare sev 0 x", True, "Unknown severity '0'", "/incident declare"),
    ("declare " + "x" * 201, True, "The title is 201 characters long: at most 200.", "declare"),
    ("sev", True, "`sev` needs a value.", f"/incident sev <1-4> {SEVS}"),
    ("sev 5", True, "Unknown severity '5': allowed are SEV1, SEV2, SEV3, SEV4.", "/incident sev"),
    ("sev critical", True, "Unknown severity 'critical'", "/incident sev <1-4>"),
    ("status", True, "`status` needs a value.", "triage, investigating, identified"),
    (
        "status fixed",
        True,
        "Unknown status 'fixed': allowed are triage, investigating, "
        "identified, monitoring, resolved, closed.",
        "/incident status <status>",
    ),
    (
        "assign",
        True,
        "`assign` needs a role (commander, scribe, comms_lead, ops_lead).",
        "/incident assign <role> @user",
    ),
    ("assign scribe", True, "Mention the person to assign, like @alice.", "@user"),
    ("assign scribe bob", True, "Mention the person to assign", "@user"),
    ("assign <@U111>", True, "`assign` needs a role", "@user"),
    (
        "assign janitor <@U111>",
        True,
        "Unknown role 'janitor': allowed are commander, scribe, comms_lead, ops_lead.",
        "@user",
    ),
    ("assign scribe <@U111> <@U222>", True, "Mention exactly one person", "@user"),
    ("unassign", True, "`unassign` needs a role", "/incident unassign <role>"),
    ("unassign chef", True, "Unknown role 'chef'", "/incident unassign <role>"),
    # A word that reads as a severity is one: never quietly part of an SEV3's title.
    ("declare sev99 RPC down", False, "Unknown severity 'sev99': allowed are SEV1", "declare"),
    ("declare sev-1 RPC down", False, "Unknown severity 'sev-1': allowed are SEV1", "declare"),
    ("declare SevX RPC down", False, "Unknown severity 'SevX': allowed are SEV1", "declare"),
    ("declare sev0 RPC down", False, "Unknown severity 'sev0': allowed are SEV1", "declare"),
    ("note", True, "`note` needs some text.", "/incident note <text>"),
    ('note ""', True, "`note` needs some text.", "/incident note <text>"),
    ("update", True, "`update` needs some text.", "/incident update <text>"),
    ("resolve", True, "`resolve` needs a summary of what fixed it.", "/incident resolve <summary>"),
    ("reopen now please", True, "`reopen` takes no arguments.", "/incident reopen"),
    ("list all of them", True, "`list` takes no arguments.", "/incident list"),
    ("page", True, "`page` needs a service (indexer, rpc, validators).", "/incident page"),
    ("page dns now", True, "Unknown service 'dns': configured are indexer, rpc", "/incident page"),
    ("oncall rpc please", True, "`oncall` takes at most a service name.", "/incident oncall"),
    (
        "alerts firing",
        True,
        "`alerts` takes only `unmatched` or `snooze`, not 'firing'.",
        "/incident alerts",
    ),
    ("page rpc", False, "`/incident page` only works in", "/incident page"),
    ("sev 1", False, "`/incident sev` only works in an incident's channel.", "run it in the"),
    ("status monitoring", False, "`/incident status` only works in an incident's channel.", ""),
    ("assign scribe <@U1>", False, "`/incident assign` only works in an incident's channel", ""),
    (
        "resolve done",
        False,
        "`/incident resolve` only works in an incident's channel",
        "/incident resolve",
    ),
    (
        "timeline",
        False,
        "`/incident timeline` only works in an incident's channel",
        "/incident timeline",
    ),
]


@pytest.mark.parametrize(("text", "in_channel", "error", "usage"), MALFORMED)
def test_malformed_commands_get_a_message_and_usage(text, in_channel, error, usage):
    result = p(text, in_channel)
    assert isinstance(result, Usage)
    assert result.error is not None and result.error.startswith(error)
    assert usage in result.usage
    assert result.text().startswith(result.error) and "Usage: /incident" in result.text()


def test_bare_command_opens_the_declare_form_outside_an_incident_channel():
    form = Command("declare", {"severity": None, "title": None, "service": None, "private": False})
    assert p("", in_channel=False) == form
    assert p(" \u00a0 ", in_channel=False) == form
    assert p("", in_channel=True) == Command("help")


def test_help_differs_inside_an_incident_channel():
    inside = help_text(in_incident_channel=True)
    outside = help_text(in_incident_channel=False)
    assert "/incident resolve &lt;summary&gt;" in inside and "/incident resolve" not in outside
    assert "/incident declare" in inside and "/incident declare" in outside


@hsettings(max_examples=400, deadline=None)
@given(st.text(max_size=300), st.booleans())
def test_arbitrary_text_never_raises(text, in_channel):
    result = p(text, in_channel)
    assert isinstance(result, Command | Usage)
    if isinstance(result, Usage):
        assert result.usage.startswith("/incident")


@hsettings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["declare", "sev", "status", "assign", "note", "resolve", "unassign", "x"]),
    st.lists(
        st.one_of(st.text(max_size=20), st.sampled_from(["<@U1|a>", "<#C1|b>", "“", "'"])),
        max_size=6,
    ),
)
def test_arbitrary_arguments_never_raise(head, words):
    result = p(" ".join([head, *words]))
    assert isinstance(result, Command | Usage)
