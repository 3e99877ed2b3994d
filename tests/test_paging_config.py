"""Paging configuration: service names, the default service, Events routing keys."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from incidentbot.config import Settings
from incidentbot.paging.config import PagerDutySettings, parse_routing_keys

SERVICES = {"rpc": {"service_id": "P1"}, "validators": {"service_id": "P2"}}


def test_routing_keys_map_service_names_to_keys():
    pd = PagerDutySettings(services=SERVICES)
    assert parse_routing_keys("rpc=abc, validators = def\n", pd.services) == {
        "rpc": "abc",
        "validators": "def",
    }
    assert parse_routing_keys(None, pd.services) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rpc", "'rpc' has no key: use name=KEY"),
        ("rpc=", "'rpc' has no key"),
        ("dns=abc", "unknown service 'dns' (rpc, validators)"),
    ],
)
def test_bad_routing_keys_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_routing_keys(text, PagerDutySettings(services=SERVICES).services)


def test_default_service_must_be_configured():
    with pytest.raises(ValidationError, match="default_service 'dns' is not a configured service"):
        PagerDutySettings(services=SERVICES, default_service="dns")
    with pytest.raises(ValidationError, match="service name 'RPC!'"):
        PagerDutySettings(services={"RPC!": {"service_id": "P1"}})


def test_a_declaring_service_names_a_configured_severity():
    ok = {"rpc": {"service_id": "P1", "declare": True, "declare_severity": "SEV2"}}
    assert Settings(pagerduty={"services": ok}).pagerduty.services["rpc"].declare
    bad = {"rpc": {"service_id": "P1", "declare": True, "declare_severity": "SEV9"}}
    with pytest.raises(
        ValidationError,
        match=re.escape("pagerduty.services.rpc.declare_severity: 'SEV9' is not a configured"),
    ):
        Settings(pagerduty={"services": bad})
