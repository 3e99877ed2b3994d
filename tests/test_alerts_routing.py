"""Routing rules, matchers, templates and the payload reader: what a rule makes of an alert."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from incidentbot.alerts import routing
from incidentbot.alerts.config import AlertSettings, Matcher
from incidentbot.alerts.payload import PayloadError, parse
from incidentbot.config import ConfigError, Settings, load_settings
from tests.test_alerts_support import RULES, alert, notification, settings_for


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="RpcDown"', {"alertname": "RpcDown"}, True),
        ('alertname = "RpcDown"', {"alertname": "RpcDownAgain"}, False),
        ("env!=staging", {"env": "prod"}, True),
        ("env!=staging", {"env": "staging"}, False),
        ('instance=~"rpc-[0-9]+"', {"instance": "rpc-12"}, True),
        # anchored at both ends, as in Alertmanager
        ('instance=~"rpc-[0-9]+"', {"instance": "old-rpc-12"}, False),
        ('instance!~"rpc-.*"', {"instance": "geth-1"}, True),
        # a missing label is the empty string
        ('team=""', {"alertname": "X"}, True),
        ('team!=""', {"alertname": "X"}, False),
        (r'summary="say \"hi\""', {"summary": 'say "hi"'}, True),
    ],
)
def test_matchers_follow_alertmanager_semantics(text, labels, expected):
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alertname", "is not a matcher"),
        ("9bad=x", "is not a matcher"),
        ('instance=~"rpc-("', "invalid regular expression"),
        ('alertname="unclosed', "not closed"),
    ],
)
def test_bad_matchers_are_refused_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        Matcher.parse(text)


def test_first_matching_rule_wins():
    settings = AlertSettings(
        rules=[
            {"name": "staging", "matchers": ['env="staging"'], "declare": False},
            {"name": "lagging", "matchers": ["alertname=~Node.*"], "severity": "3"},
            {"name": "catch-all", "severity": "SEV4"},
        ]
    )
    assert routing.route(settings, {"alertname": "NodeLagging", "env": "staging"}).rule_name == (
        "staging"
    )
    lagging = routing.route(settings, {"alertname": "NodeLagging", "env": "prod"})
    assert (lagging.rule_name, lagging.rule.severity, lagging.declares) == ("lagging", "SEV3", True)
    assert routing.route(settings, {"alertname": "DiskFull"}).rule_name == "catch-all"
    assert not routing.route(AlertSettings(), {"alertname": "DiskFull"}).matched


def test_title_template_renders_labels_and_annotations(tmp_path):
    settings = settings_for(tmp_path)
    payload, _ = parse(
        notification([alert("RpcEndpointDown", instance="rpc-2:8545", chain="ethereum")])
    )
    rule = routing.route(settings.alerts, payload.alerts[0].labels).rule
    assert routing.title(rule, payload.alerts[0], payload) == (
        "RpcEndpointDown on rpc-2:8545 (ethereum)",
        None,
    )
    assert routing.fields(rule, payload.alerts[0], payload) == {"chain": "ethereum"}


def test_a_template_that_breaks_falls_back_to_the_default_title():
    settings = AlertSettings(
        rules=[
            {"name": "escape", "title": "{{ labels.__class__.__mro__ }}"},
            {"name": "empty", "matchers": ["alertname=Quiet"], "title": "{{ labels.nope }}"},
        ]
    )
    payload, _ = parse(notification([alert("NodeLagging", instance="geth-1")]))
    title, problem = routing.title(settings.rules[0], payload.alerts[0], payload)
    assert title == "NodeLagging on geth-1: NodeLagging fired"
    assert problem is not None and "unsafe" in problem  # the sandbox refused it
    quiet, _ = parse(notification([alert("Quiet", annotations={"summary": "shh"})]))
    title, problem = routing.title(settings.rules[1], quiet.alerts[0], quiet)
    assert title == "Quiet: shh" and "gave nothing" in str(problem)


def test_long_titles_are_clipped_to_what_an_incident_accepts():
    payload, _ = parse(notification([alert("X", annotations={"summary": "y" * 500})]))
    title, _ = routing.title(None, payload.alerts[0], payload)
    assert len(title) == routing.MAX_TITLE and title.endswith("…")


def test_runbook_params_come_from_labels():
    settings = AlertSettings(
        rules=[
            {
                "name": "rpc",
                "runbook": {
                    "name": "restart-node",
                    "params": {"node": "instance", "client": "client"},
                    "with": {"network": "mainnet", "host": "{{ labels.instance.split(':')[0] }}"},
                },
            }
        ]
    )
    payload, _ = parse(notification([alert("RpcEndpointDown", instance="rpc-2:8545")]))
    s = routing.suggestion(settings.rules[0], payload.alerts[0])
    assert s is not None
    assert s.runbook == "restart-node"
    assert s.params == {"node": "rpc-2:8545", "network": "mainnet", "host": "rpc-2"}
    assert s.missing == ["client (no label client)"]
    assert s.describe() == (
        "Suggested runbook restart-node with host=rpc-2 network=mainnet node=rpc-2:8545 "
        "(missing: client (no label client))"
    )


def test_rule_problems_are_caught_when_the_settings_load():
    with pytest.raises(ValidationError) as info:
        Settings(
            alerts={
                "rules": [
                    {"name": "a", "severity": "SEV9", "fields": {"region": "x"}},
                    {"name": "b", "title": "{{ labels.x", "matchers": ["env=~("]},
                ]
            }
        )
    text = str(info.value)
    assert "matchers" in text and "invalid regular expression" in text
    assert "title is not a valid template" in text
    with pytest.raises(ValidationError, match=r"rules\[1\].name: duplicate rule name 'a'"):
        Settings(alerts={"rules": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ValidationError) as info:
        Settings(alerts={"rules": [{"name": "a", "severity": "SEV9", "fields": {"region": "x"}}]})
    text = str(info.value)
    assert "rules[0].severity: 'SEV9' is not a configured severity" in text
    assert "unknown incident field 'region'" in text
    with pytest.raises(ValidationError, match="is not a label name"):
        AlertSettings(rules=[{"name": "r", "runbook": {"name": "x", "params": {"n": "{{ x }}"}}}])


def test_the_token_is_a_secret_never_read_from_the_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("INCIDENTBOT_ALERTMANAGER_TOKEN", raising=False)
    config = tmp_path / "incidentbot.yaml"
    config.write_text("alertmanager_token: hunter2\nalerts:\n  rules: []\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert "alertmanager_token: secrets are not read from the config file" in str(info.value)

    config.write_text("alerts:\n  rules:\n    - name: rpc\n      matchers: ['alertname=Rpc']\n")
    monkeypatch.setenv("INCIDENTBOT_ALERTMANAGER_TOKEN", "from-env")
    settings = load_settings(config)
    assert settings.alertmanager_token.get_secret_value() == "from-env"
    assert settings.alerts.rules[0].matchers[0].value == "Rpc"

    monkeypatch.delenv("INCIDENTBOT_ALERTMANAGER_TOKEN")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "incidentbot_alertmanager_token").write_text("from-file")
    monkeypatch.setenv("INCIDENTBOT_SECRETS_DIR", str(secrets))
    assert load_settings(config).alertmanager_token.get_secret_value() == "from-file"


def test_default_rules_match_nothing():
    assert Settings().alerts.rules == []
    assert RULES  # the shared rules used by the other tests are non-trivial


# -- the payload ---------------------------------------------------------------------------------


def test_payload_times_keep_microseconds_and_go_zero_means_unset():
    payload, _ = parse(notification([alert("X", starts_at=datetime(2024, 5, 1, 12, 0, 1, 250000,
                                                                   tzinfo=UTC))]))  # fmt: skip
    a = payload.alerts[0]
    assert a.starts_at == datetime(2024, 5, 1, 12, 0, 1, 250000, tzinfo=UTC)
    assert a.ends_at is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("groupKey"), "groupKey: is required"),
        (lambda d: d.update(version="3"), "version '3' is not supported"),
        (lambda d: d.update(status="pending"), "status"),
        (lambda d: d.update(alerts="nope"), "alerts"),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "is not an RFC 3339 time"),
        (lambda d: d["alerts"][0].update(labels={}), "at least one label"),
        (lambda d: d["alerts"][0].pop("startsAt"), "startsAt: is required"),
    ],
)
def test_malformed_payloads_are_refused_with_every_problem_named(mutate, message):
    data = notification([alert("X")])
    mutate(data)
    with pytest.raises(PayloadError, match=message):
        parse(data)


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(PayloadError, match="must be a JSON object"):
        parse([notification([alert("X")])])


def test_secrets_in_alerts_are_redacted_before_anything_sees_them():
    leaky = alert(
        "RpcEndpointDown",
        instance="https://eth-mainnet.example.com/v3/0123456789abcdef0123456789abcdef",
        api_key="sk_live_1234",
        annotations={"summary": "down; try curl -H 'Authorization: Bearer abcdefghijklmnop'"},
    )
    payload, stored = parse(notification([leaky]))
    a = payload.alerts[0]
    assert a.labels["api_key"] == "***"
    assert a.labels["instance"] == "https://eth-mainnet.example.com/v3/***"
    assert "abcdefghijklmnop" not in a.annotations["summary"]
    text = repr(stored)
    for secret in ("sk_live_1234", "0123456789abcdef0123456789abcdef", "abcdefghijklmnop"):
        assert secret not in text
    # the group key is identity, kept readable (it reads like a secret to the key-name rule)
    assert stored["groupKey"].startswith("{}/")


def test_a_missing_fingerprint_is_derived_from_the_labels():
    a, b = alert("X", instance="a"), alert("X", instance="a")
    del a["fingerprint"], b["fingerprint"]
    first, stored = parse(notification([a]))
    second, _ = parse(notification([b]))
    assert first.alerts[0].fingerprint == second.alerts[0].fingerprint != ""
    assert stored["alerts"][0]["fingerprint"] == first.alerts[0].fingerprint


def test_rules_are_shown_as_written_and_read_back_the_same():
    rules = AlertSettings(rules=RULES)
    shown = rules.model_dump(mode="json")
    assert shown["rules"][0]["matchers"] == ['alertname="RpcEndpointDown"']
    assert shown["rules"][0]["runbook"]["params"] == {"node": "instance"}
    assert "with" in shown["rules"][0]["runbook"]
    assert AlertSettings.model_validate(shown) == rules


def test_a_value_repeated_in_a_body_is_masked_by_where_it_is_each_time():
    """The walk cleans and masks each distinct string once: the same value under a secret's
    key and under a plain one is masked only under the first, in every alert that has it,
    and a key with an invisible character is cleaned in every alert."""
    alerts = [
        alert("X", instance=f"n-{i}", password="hunter2-value", build="hunter2-value")
        for i in range(3)
    ]
    for a in alerts:
        a["labels"]["zone\u200b"] = "eu-1"
    payload, stored = parse(notification(alerts))
    for a, raw in zip(payload.alerts, stored["alerts"], strict=True):
        assert (a.labels["password"], a.labels["build"]) == ("***", "hunter2-value")
        assert raw["labels"]["password"] == "***" and a.labels["zone"] == "eu-1"
        assert "zone\u200b" not in raw["labels"]
