"""Conformance with PagerDuty's own API descriptions, and the layering rule for the server."""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pagerduty
import pytest

from incidentbot.sandbox.pagerduty import PagerDutyRequest, PagerDutySandbox
from incidentbot.sandbox.pagerduty.app import ENDPOINTS
from incidentbot.sandbox.pagerduty.spec import (
    CONTRACT,
    ERRATA,
    PagerDutySpec,
    check_request_log,
    load_spec,
)
from incidentbot.sandbox.slack.spec import find_specs_dir as slack_find_specs_dir
from incidentbot.sandbox.specs import VENDORED_DIR, SpecUnavailable, find_specs_dir

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC).timestamp()
ALICE = "alice@nodeworks.example"
# What the PagerDuty server may import from outside its package: the specs lookup and
# the Slack sandbox's generic pieces (fault plan, request log, schema validator, Problem).
SHARED = {
    "incidentbot.sandbox.admin",
    "incidentbot.sandbox.serving",
    "incidentbot.sandbox.specs",
    "incidentbot.sandbox.slack.faults",
    "incidentbot.sandbox.slack.log",
    "incidentbot.sandbox.slack.schema",
    "incidentbot.sandbox.slack.spec",
}
WIRING = {"sandbox", "cli", "demo.py"}  # modules allowed to connect the bot and the sandbox


@pytest.fixture(scope="module")
def spec() -> PagerDutySpec:
    """The vendored contract (or the full descriptions, where ``$INCIDENTBOT_SPECS_DIR`` points
    at them: the same tests then run against PagerDuty's own files)."""
    return load_spec()


@pytest.fixture(scope="module")
def server() -> Iterator[PagerDutySandbox]:
    with PagerDutySandbox(clock=lambda: NOW) as sandbox:
        yield sandbox


@pytest.fixture
def pd(server: PagerDutySandbox) -> PagerDutySandbox:
    server.reset()
    return server


def expect_status(status: int, call: Any) -> None:
    with pytest.raises(pagerduty.HttpError) as info:
        call()
    assert info.value.response.status_code == status


def full_session(pd: PagerDutySandbox) -> None:
    """Every endpoint the sandbox serves, on its happy path and on its usual refusals."""
    client = pd.rest_client(ALICE)
    client.sleep_timer = 0.001
    rpc = client.find("services", "rpc")
    assert rpc is not None
    client.rget(
        f"services/{rpc['id']}", params={"include[]": ["integrations", "escalation_policies"]}
    )
    expect_status(404, lambda: client.rget("services/PNOPE00"))
    users = client.list_all("users", params={"query": "nodeworks"}, total=True)
    client.rget(users[0])
    expect_status(404, lambda: client.rget("users/PNOPE00"))
    client.list_all("escalation_policies", params={"user_ids[]": [users[0]["id"]]})
    schedules = client.list_all("schedules", params={"query": "primary"})
    client.rget(
        schedules[0], params={"since": "2026-03-04T00:00:00Z", "until": "2026-03-10T00:00:00Z"}
    )
    policy = rpc["escalation_policy"]["id"]
    client.list_all("oncalls", params={"escalation_policy_ids[]": [policy]})
    client.list_all(
        "oncalls",
        params={
            "schedule_ids[]": [schedules[0]["id"]],
            "since": "2026-03-04T10:00:00Z",
            "until": "2026-04-04T10:00:00Z",
            "earliest": "true",
            "include[]": ["users"],
        },
    )
    expect_status(400, lambda: client.rget("oncalls", params={"until": "2026-12-31T00:00:00Z"}))
    created = client.rpost(
        "incidents",
        json={
            "type": "incident",
            "title": "RPC nodes lagging",
            "service": {"id": rpc["id"], "type": "service_reference"},
            "urgency": "high",
            "incident_key": "incidentbot-1",
            "body": {"type": "incident_body", "details": "Slack: #inc-1-rpc-lag"},
        },
    )
    again = {
        "type": "incident",
        "title": "again",
        "service": {"id": rpc["id"], "type": "service_reference"},
    }
    expect_status(
        400, lambda: client.rpost("incidents", json={**again, "incident_key": "incidentbot-1"})
    )
    ghost = {**again, "service": {"id": "PNOPE00", "type": "service_reference"}}
    expect_status(400, lambda: client.rpost("incidents", json=ghost))
    stranger = pd.rest_client("mallory@example.com")
    expect_status(400, lambda: stranger.rpost("incidents", json=again))
    expect_status(401, lambda: pd.rest_client(token="wrong").list_all("services"))
    client.list_all("incidents", params={"statuses[]": ["triggered"], "service_ids[]": [rpc["id"]]})
    client.list_all("incidents", params={"incident_key": "incidentbot-1", "date_range": "all"})
    client.rget(created)
    expect_status(404, lambda: client.rget("incidents/PNOPE00"))
    client.rput(created, json={"type": "incident_reference", "status": "acknowledged"})
    dave = pd.account.user("dave").id
    client.rput(
        created,
        json={
            "type": "incident",
            "assignments": [{"assignee": {"id": dave, "type": "user_reference"}}],
        },
    )
    client.rput(created, json={"type": "incident", "escalation_level": 2})
    client.rpost(f"incidents/{created['id']}/notes", json={"content": "failing over to node-4"})
    client.rget(f"incidents/{created['id']}/notes")
    client.list_all(f"incidents/{created['id']}/log_entries")
    client.rput(created, json={"type": "incident", "status": "resolved", "resolution": "resynced"})
    expect_status(
        400, lambda: client.rput(created, json={"type": "incident", "status": "resolved"})
    )
    expect_status(
        404,
        lambda: client.rput("incidents/PNOPE00", json={"type": "incident", "status": "resolved"}),
    )
    pd.acknowledge(created["id"], by="bob")  # reopened from the app: visible through the API
    client.rget(created)
    events = pd.events_client("rpc")
    events.sleep_timer = 0.001
    key = events.trigger(
        "RPC 5xx above 5%", "haproxy", dedup_key="rpc-5xx", custom_details={"rate": 0.07}
    )
    events.trigger(
        "RPC 5xx above 8%",
        "haproxy",
        dedup_key=key,
        links=[{"href": "https://grafana.example/d/rpc", "text": "RPC"}],
    )
    events.acknowledge(key)
    events.resolve(key)
    events.send_change_event(
        payload={
            "summary": "HAProxy config v42",
            "source": "ci",
            "timestamp": "2026-03-04T10:00:00Z",
        }
    )
    expect_status(
        400,
        lambda: pagerduty.EventsApiV2Client(
            "f" * 32, base_url=pd.events_url, verify=pd.ssl_context()
        ).trigger("x", "y"),
    )
    pd.fail_next("GET /services", "ratelimited")
    client.list_all("services")


def test_every_served_endpoint_is_described(spec: PagerDutySpec) -> None:
    assert spec.missing_endpoints((e.api, e.key) for e in ENDPOINTS) == []
    assert len(ENDPOINTS) == 17


def test_a_full_session_conforms(spec: PagerDutySpec, pd: PagerDutySandbox) -> None:
    full_session(pd)
    log = pd.requests()
    assert {e.method for e in log} == {e.key for e in ENDPOINTS}
    assert {e.status for e in log} >= {200, 201, 202, 400, 401, 404, 429}
    problems = check_request_log(log, spec)
    assert problems == [], "\n".join(map(str, problems))
    with httpx.Client(verify=pd.ssl_context()) as admin:
        over_http = admin.get(pd.url + "/_sandbox/log").json()["requests"]
    assert len(over_http) == len(log)
    assert check_request_log(over_http, spec) == []


def test_bad_requests_are_reported(spec: PagerDutySpec, pd: PagerDutySandbox) -> None:
    client = pd.rest_client()
    rpc = pd.account.service("rpc").id
    incident = {
        "type": "incident",
        "title": "x",
        "service": {"id": rpc, "type": "service_reference"},
    }
    client.post("/incidents", json={"incident": incident})  # no From
    client.get("/incidents", params={"colour": "red", "limit": "ten"})
    client.post("/incidents", json={"incident": {"title": "x"}}, headers={"From": ALICE})
    client.get("/incidents/PNOPE00/alerts")
    with httpx.Client(verify=pd.ssl_context()) as raw:
        raw.get(pd.rest_url + "/services")  # no credentials
        raw.post(
            pd.events_url + "/v2/enqueue",
            json={"routing_key": pd.routing_key("rpc"), "event_action": "poke"},
        )
    found = {(p.method, p.kind, p.detail) for p in check_request_log(pd.requests(), spec)}
    assert ("POST /incidents", "missing_required_header", "From") in found
    assert ("GET /incidents", "undeclared_parameter", "'colour'") in found
    assert ("GET /incidents", "parameter_type", "limit: 'ten' is not a integer") in found
    assert ("POST /incidents", "body_schema", "$.incident: missing required 'service'") in found
    assert (
        "GET /incidents/PNOPE00/alerts",
        "unserved_endpoint",
        "rest API: /incidents/PNOPE00/alerts",
    ) in found
    assert ("GET /services", "missing_credentials", "no Authorization header") in found
    assert any(m == "POST /v2/enqueue" and k == "body_schema" and "poke" in d for m, k, d in found)


def test_bad_responses_are_reported(spec: PagerDutySpec, pd: PagerDutySandbox) -> None:
    client = pd.rest_client(ALICE)
    client.list_all("services")
    client.rpost(
        "incidents",
        json={
            "type": "incident",
            "title": "x",
            "service": {"id": pd.account.service("rpc").id, "type": "service_reference"},
        },
    )
    listed, created = (copy.deepcopy(e) for e in pd.requests())
    listed.response["services"][0]["id"] = 7
    del listed.response["services"][0]["escalation_policy"]
    created.response["incident"]["status"] = "open"
    created.response["incident"]["created_at"] = "yesterday"
    odd = copy.deepcopy(created)
    odd.status = 418
    problems = [(p.kind, p.detail) for p in check_request_log([listed, created, odd], spec)]
    assert ("response_schema", "$.services[0].id: expected string, got int") in problems
    assert ("response_schema", "$.services[0]: missing required 'escalation_policy'") in problems
    assert any(k == "response_schema" and "$.incident.status" in d for k, d in problems)
    assert any(k == "response_schema" and "$.incident.created_at" in d for k, d in problems)
    assert any(k == "undocumented_status" and d.startswith("418") for k, d in problems)


def test_faulted_calls_keep_only_their_request_check(
    spec: PagerDutySpec, pd: PagerDutySandbox
) -> None:
    entry = PagerDutyRequest(
        seq=1,
        method="GET /services",
        http_method="GET",
        args={"colour": "red"},
        user=None,
        token_source="header",
        content_type="none",
        status=503,
        response={"anything": True},
        started_at=0.0,
        duration_s=0.0,
        fault="server_error",
        headers={"accept": "application/vnd.pagerduty+json;version=2"},
    )
    assert [p.kind for p in check_request_log([entry], spec)] == ["undeclared_parameter"]


def test_errata_are_listed_and_in_force(spec: PagerDutySpec, pd: PagerDutySandbox) -> None:
    """Each erratum is listed, recorded in the contract, and what PagerDuty really does passes."""
    wheres = [where for where, _, _ in ERRATA]
    assert set(wheres) == {
        "IncidentBody.details",
        "AcknowledgeLogEntry.type",
        "Content-Type header parameter",
        "Service.escalation_policy, Service.integrations[], Oncall.user",
        "PUT /incidents/{id} responses",
    }
    contract = json.loads((VENDORED_DIR / CONTRACT).read_text(encoding="utf-8"))
    assert contract["errata"] == wheres
    client = pd.rest_client(ALICE)
    rpc = client.find("services", "rpc")
    client.rget(f"services/{rpc['id']}", params={"include[]": ["escalation_policies"]})
    client.list_all("oncalls", params={"include[]": ["users"]})
    created = client.rpost(
        "incidents",
        json={
            "type": "incident",
            "title": "x",
            "service": {"id": rpc["id"], "type": "service_reference"},
            "body": {"type": "incident_body", "details": "a string, as PagerDuty sends"},
        },
    )
    client.rput(created, json={"type": "incident", "status": "acknowledged"})
    client.list_all(f"incidents/{created['id']}/log_entries")
    client.rput(created, json={"type": "incident", "status": "resolved"})
    expect_status(
        400, lambda: client.rput(created, json={"type": "incident", "status": "resolved"})
    )
    log = pd.requests()
    assert not any(e.headers.get("content-type") for e in log if e.http_method == "GET")
    entries = next(e for e in log if e.method.endswith("/log_entries")).response["log_entries"]
    assert "acknowledge_log_entry" in {e["type"] for e in entries}
    oncalls = next(e for e in log if e.method == "GET /oncalls").response["oncalls"]
    assert oncalls and all(o["user"]["type"] == "user" for o in oncalls)  # expanded users
    assert [e.status for e in log if e.http_method == "PUT"][-1] == 400
    problems = check_request_log(log, spec)
    assert problems == [], "\n".join(map(str, problems))


def test_specs_dir_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENTBOT_SPECS_DIR", str(tmp_path))
    with pytest.raises(SpecUnavailable, match=re.escape(CONTRACT)):
        PagerDutySpec.load()
    with pytest.raises(SpecUnavailable, match="INCIDENTBOT_SPECS_DIR"):
        slack_find_specs_dir()  # the Slack server looks its description up the same way
    monkeypatch.delenv("INCIDENTBOT_SPECS_DIR")
    assert find_specs_dir() == VENDORED_DIR
    shutil.copy(VENDORED_DIR / CONTRACT, tmp_path)
    monkeypatch.setenv("INCIDENTBOT_SPECS_DIR", str(tmp_path))
    assert find_specs_dir() == tmp_path
    assert PagerDutySpec.load().missing_endpoints((e.api, e.key) for e in ENDPOINTS) == []
    with pytest.raises(SpecUnavailable, match=r"slack_web_openapi_v2\.json"):
        slack_find_specs_dir()


# -- layering ------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add("." * node.level + (node.module or ""))
            elif node.module:
                found.add(node.module)
    return found


def test_pagerduty_server_and_core_do_not_import_each_other() -> None:
    """The server speaks only PagerDuty's protocols; the core reaches it through ``pagerduty``.

    The server package imports nothing of the bot (no relative imports either, so nothing
    escapes this check); only the wiring (the CLI, the demo lab) may import both sides.
    """
    package = ROOT / "incidentbot"
    server = package / "sandbox" / "pagerduty"
    for path in server.rglob("*.py"):
        outside = {
            m
            for m in _imports(path)
            if m.startswith(".")
            or (
                m.startswith("incidentbot")
                and not m.startswith("incidentbot.sandbox.pagerduty")
                and m not in SHARED
            )
        }
        assert outside == set(), f"{path} imports {outside}"
    for name in (
        "admin.py",
        "serving.py",
        "specs.py",
        "slack/faults.py",
        "slack/log.py",
        "slack/schema.py",
    ):
        shared = {m for m in _imports(package / "sandbox" / name) if m.startswith("incidentbot")}
        assert shared <= {"incidentbot.sandbox.slack.log"}, f"{name} imports {shared}"
    for path in package.rglob("*.py"):
        top = path.relative_to(package).parts[0]
        if top in WIRING or top.startswith("cli"):
            continue
        assert not any(m.startswith("incidentbot.sandbox") for m in _imports(path)), path
