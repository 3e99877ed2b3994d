"""The local PagerDuty server's REST API v2, over real HTTPS with the ``pagerduty`` client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pagerduty
import pytest

from incidentbot.sandbox.pagerduty import PagerDutySandbox
from incidentbot.sandbox.slack.workspace import SEED_EMAIL_DOMAIN, SEED_HUMANS

# A Wednesday. The RPC rotation (bob, carol) hands over on Mondays at 09:00 UTC: carol holds
# the week of 2 March 2026, bob takes the pager on 9 March at 09:00.
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
ALICE = "alice@nodeworks.example"


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


CLOCK = Clock()


@pytest.fixture(scope="module")
def server() -> Iterator[PagerDutySandbox]:
    with PagerDutySandbox(clock=CLOCK) as sandbox:
        yield sandbox


@pytest.fixture
def pd(server: PagerDutySandbox) -> PagerDutySandbox:
    CLOCK.now = NOW.timestamp()
    server.reset()
    return server


@pytest.fixture
def client(pd: PagerDutySandbox) -> pagerduty.RestApiV2Client:
    return pd.rest_client(from_email=ALICE)


def refusal(call: Any) -> tuple[int, dict[str, Any]]:
    """The status and body of the HTTP error ``call()`` raises."""
    with pytest.raises(pagerduty.HttpError) as info:
        call()
    return info.value.response.status_code, info.value.response.json()


def service_ref(pd: PagerDutySandbox, name: str) -> dict[str, str]:
    return {"id": pd.account.service(name).id, "type": "service_reference"}


def new_incident(client: pagerduty.RestApiV2Client, pd: PagerDutySandbox, **extra: Any) -> dict:
    body = {"type": "incident", "title": "RPC nodes lagging", "service": service_ref(pd, "rpc")}
    return client.rpost("incidents", json={**body, **extra})


# -- directory -----------------------------------------------------------------------------


def test_directory_lists_the_seeded_account(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    services = client.list_all("services")
    assert [s["name"] for s in services] == ["indexer", "rpc", "validators"]
    rpc = client.find("services", "rpc")
    assert rpc is not None and rpc["self"] == f"{pd.rest_url}/services/{rpc['id']}"
    full = client.rget(f"services/{rpc['id']}", params={"include[]": ["integrations"]})
    assert full["integrations"][0]["integration_key"] == pd.routing_key("rpc")
    assert "integration_key" not in client.rget(rpc)["integrations"][0]
    policy = client.rget(f"services/{rpc['id']}")["escalation_policy"]
    policies = {p["id"]: p for p in client.list_all("escalation_policies")}
    targets = [r["targets"][0]["summary"] for r in policies[policy["id"]]["escalation_rules"]]
    assert targets == ["RPC primary", "SRE leads"]
    assert {s["name"] for s in client.list_all("schedules")} == {
        "RPC primary",
        "Validators primary",
        "Indexer primary",
        "SRE leads",
    }


def test_users_are_the_slack_sandboxs_people(client: pagerduty.RestApiV2Client) -> None:
    users = client.list_all("users")
    assert {u["email"] for u in users} == {f"{h.name}@{SEED_EMAIL_DOMAIN}" for h in SEED_HUMANS}
    assert {u["name"] for u in users} == {h.real_name for h in SEED_HUMANS}
    bob = client.find("users", "bob@nodeworks.example", attribute="email")
    assert bob is not None and bob["name"] == "Bob Okafor"
    assert client.rget(bob)["email"] == "bob@nodeworks.example"
    assert client.list_all("users", params={"query": "nguyen"})[0]["name"] == "Carol Nguyen"
    status, body = refusal(lambda: client.rget("users/PNOPE00"))
    assert (status, body) == (404, {"error": {"message": "Not Found", "code": 2100}})


def test_schedule_renders_the_rotation(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    schedule = client.find("schedules", "RPC primary")
    assert schedule is not None
    shown = client.rget(
        schedule, params={"since": "2026-03-04T00:00:00Z", "until": "2026-03-17T00:00:00Z"}
    )
    entries = [
        (e["user"]["summary"], e["start"])
        for e in shown["final_schedule"]["rendered_schedule_entries"]
    ]
    assert entries == [
        ("Carol Nguyen", "2026-03-02T09:00:00Z"),
        ("Bob Okafor", "2026-03-09T09:00:00Z"),
        ("Carol Nguyen", "2026-03-16T09:00:00Z"),
    ]
    assert shown["schedule_layers"][0]["rotation_turn_length_seconds"] == 7 * 24 * 3600


# -- on call -------------------------------------------------------------------------------


def test_oncall_now_and_next(pd: PagerDutySandbox, client: pagerduty.RestApiV2Client) -> None:
    policy = pd.account.service("rpc").escalation_policy_id
    now = client.list_all("oncalls", params={"escalation_policy_ids[]": [policy]})
    assert [(o["escalation_level"], o["user"]["summary"]) for o in now] == [
        (1, "Carol Nguyen"),
        (2, "Dave Kim"),
    ]
    assert now[0]["end"] == "2026-03-09T09:00:00Z"
    upcoming = client.list_all(
        "oncalls",
        params={
            "escalation_policy_ids[]": [policy],
            "since": "2026-03-04T10:00:00Z",
            "until": "2026-03-18T10:00:00Z",
            "earliest": "true",
        },
    )
    level1 = [(o["user"]["summary"], o["start"]) for o in upcoming if o["escalation_level"] == 1]
    assert level1 == [
        ("Carol Nguyen", "2026-03-02T09:00:00Z"),
        ("Bob Okafor", "2026-03-09T09:00:00Z"),
    ]
    # When the clock reaches the handoff, "now" is bob.
    CLOCK.now = datetime(2026, 3, 9, 9, 0, tzinfo=UTC).timestamp()
    after = client.list_all("oncalls", params={"escalation_policy_ids[]": [policy]})
    assert after[0]["user"]["summary"] == "Bob Okafor"


def test_oncall_filters_and_include(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    schedule = client.find("schedules", "Validators primary")
    assert schedule is not None
    rows = client.list_all(
        "oncalls", params={"schedule_ids[]": [schedule["id"]], "include[]": ["users"]}
    )
    assert [(r["user"]["name"], r["user"]["email"]) for r in rows] == [
        ("Dave Kim", "dave@nodeworks.example")
    ]
    dave = pd.account.user("dave").id
    mine = client.list_all("oncalls", params={"user_ids[]": [dave]})
    assert {r["escalation_policy"]["summary"] for r in mine} == {
        "Rpc escalation",
        "Validators escalation",
        "Indexer escalation",
    }


def test_oncall_window_is_limited_to_90_days(client: pagerduty.RestApiV2Client) -> None:
    too_far = (NOW + timedelta(days=91)).isoformat()
    status, body = refusal(lambda: client.rget("oncalls", params={"until": too_far}))
    assert status == 400 and body["error"]["code"] == 2001
    backwards = {"since": "2026-03-05T00:00:00Z", "until": "2026-03-04T00:00:00Z"}
    assert refusal(lambda: client.rget("oncalls", params=backwards))[0] == 400
    assert refusal(lambda: client.rget("oncalls", params={"since": "yesterday"}))[0] == 400
    within = (NOW + timedelta(days=89)).isoformat()
    assert client.rget("oncalls", params={"until": within, "limit": 100})


# -- incidents -----------------------------------------------------------------------------


def test_create_incident_pages_the_oncall(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    incident = new_incident(
        client,
        pd,
        incident_key="incidentbot-42",
        body={"type": "incident_body", "details": "Slack: https://slack.example/C42"},
    )
    assert incident["id"].startswith("P") and len(incident["id"]) == 7
    assert incident["incident_number"] == 1 and incident["status"] == "triggered"
    assert incident["summary"] == "[#1] RPC nodes lagging"
    assert incident["incident_key"] == "incidentbot-42"
    assert [a["assignee"]["summary"] for a in incident["assignments"]] == ["Carol Nguyen"]
    assert incident["html_url"].startswith(pd.url) and incident["self"].startswith(pd.rest_url)
    assert incident["body"]["details"] == "Slack: https://slack.example/C42"
    assert client.rget(incident)["id"] == incident["id"]
    assert pd.requests("POST /incidents")[0].status == 201
    listed = client.list_all("incidents", params={"incident_key": "incidentbot-42"})
    assert [i["id"] for i in listed] == [incident["id"]]


def test_a_retried_create_with_the_same_incident_key_is_refused(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    first = new_incident(client, pd, incident_key="incidentbot-7")
    status, body = refusal(lambda: new_incident(client, pd, incident_key="incidentbot-7"))
    assert status == 400
    assert body == {
        "error": {
            "message": "Arguments Caused Error",
            "code": 2002,
            "errors": ["Open incident with matching dedup key already exists on this service"],
        }
    }
    other = client.rpost(
        "incidents",
        json={
            "type": "incident",
            "title": "Validators too",
            "service": service_ref(pd, "validators"),
            "incident_key": "incidentbot-7",
        },
    )
    assert other["id"] != first["id"]  # the key is unique per service
    client.rput(first, json={"type": "incident_reference", "status": "resolved"})
    again = new_incident(client, pd, incident_key="incidentbot-7")
    assert again["incident_number"] == 3  # only open incidents block a key
    assert len(pd.incidents()) == 3


def test_writes_need_a_valid_from_header(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    anonymous = pd.rest_client()
    status, body = refusal(lambda: new_incident(anonymous, pd))
    assert status == 400 and body["error"]["code"] == 2016
    assert '"From" header' in body["error"]["message"]
    malformed = pd.rest_client(from_email="alice")
    assert refusal(lambda: new_incident(malformed, pd))[1] == {
        "error": {"message": 'Malformed "From" header', "code": 1028}
    }
    stranger = pd.rest_client(from_email="mallory@example.com")
    assert refusal(lambda: new_incident(stranger, pd))[1] == {
        "error": {"message": "Requester User Not Found", "code": 1008}
    }
    assert pd.incidents() == []
    incident = new_incident(client, pd)
    for who in (anonymous, stranger):
        status, _ = refusal(
            lambda who=who: who.rput(incident, json={"type": "incident", "status": "resolved"})
        )
        assert status == 400
        assert (
            refusal(
                lambda who=who: who.rpost(
                    f"incidents/{incident['id']}/notes", json={"content": "x"}
                )
            )[0]
            == 400
        )
    assert pd.incident(incident["id"])["status"] == "triggered"
    assert anonymous.rget(incident)["id"] == incident["id"]  # reads need no From


def test_a_user_token_needs_no_from(pd: PagerDutySandbox) -> None:
    bob = pd.rest_client(token=pd.user_token("bob"))
    incident = new_incident(bob, pd)
    acked = bob.rput(incident, json={"type": "incident_reference", "status": "acknowledged"})
    assert acked["acknowledgements"][0]["acknowledger"]["summary"] == "Bob Okafor"


def test_a_bad_token_is_refused_with_401(pd: PagerDutySandbox) -> None:
    intruder = pd.rest_client(token="not-a-pagerduty-token")
    with pytest.raises(pagerduty.HttpError) as info:
        intruder.list_all("services")
    assert info.value.response.status_code == 401
    assert info.value.response.json()["error"]["message"] == "Authentication failed"
    assert pd.requests()[0].status == 401 and pd.requests()[0].token_source == "header"


def test_unknown_service_and_incident(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    ghost = {"id": "PNOPE00", "type": "service_reference"}
    status, body = refusal(lambda: new_incident(client, pd, service=ghost))
    assert (status, body["error"]["errors"]) == (400, ["Service not found"])
    assert refusal(lambda: client.rget("incidents/PNOPE00"))[0] == 404
    assert refusal(lambda: client.rget("services/PNOPE00"))[0] == 404
    put = lambda: client.rput("incidents/PNOPE00", json={"type": "incident", "status": "resolved"})  # noqa: E731
    assert refusal(put)[0] == 404


def test_acknowledge_reassign_escalate_resolve(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    incident = new_incident(client, pd)
    acked = client.rput(incident, json={"type": "incident_reference", "status": "acknowledged"})
    assert acked["status"] == "acknowledged"
    assert [a["acknowledger"]["summary"] for a in acked["acknowledgements"]] == ["Alice Moreau"]
    dave = pd.account.user("dave").id
    moved = client.rput(
        incident,
        json={
            "type": "incident_reference",
            "assignments": [{"assignee": {"id": dave, "type": "user_reference"}}],
        },
    )
    assert moved["status"] == "triggered" and moved["assigned_via"] == "direct_assignment"
    assert [a["assignee"]["summary"] for a in moved["assignments"]] == ["Dave Kim"]
    refused = refusal(
        lambda: client.rput(incident, json={"type": "incident", "escalation_level": 3})
    )
    assert refused[0] == 400
    assert pd.incident(incident["id"])["assignments"][0]["assignee"]["id"] == dave  # unchanged
    escalated = client.rput(incident, json={"type": "incident", "escalation_level": 2})
    assert [a["assignee"]["summary"] for a in escalated["assignments"]] == ["Dave Kim"]
    resolved = client.rput(
        incident, json={"type": "incident", "status": "resolved", "resolution": "node-3 resynced"}
    )
    assert resolved["status"] == "resolved" and resolved["assignments"] == []
    assert resolved["resolved_at"] == "2026-03-04T10:00:00Z"
    status, body = refusal(
        lambda: client.rput(incident, json={"type": "incident", "status": "resolved"})
    )
    assert (status, body["error"]["errors"]) == (400, ["Incident Already Resolved"])
    kinds = [e["type"] for e in client.list_all(f"incidents/{incident['id']}/log_entries")]
    assert kinds == [
        "trigger_log_entry",
        "assign_log_entry",
        "acknowledge_log_entry",
        "assign_log_entry",
        "escalate_log_entry",
        "resolve_log_entry",
    ]
    reopened = client.rput(incident, json={"type": "incident", "status": "acknowledged"})
    assert reopened["status"] == "acknowledged" and "resolved_at" not in reopened


def test_notes(pd: PagerDutySandbox, client: pagerduty.RestApiV2Client) -> None:
    incident = new_incident(client, pd)
    note = client.rpost(f"incidents/{incident['id']}/notes", json={"content": "node-3 restarted"})
    assert note["content"] == "node-3 restarted" and note["user"]["summary"] == "Alice Moreau"
    assert pd.requests("POST /incidents/{id}/notes")[0].status == 200
    notes = client.rget(f"incidents/{incident['id']}/notes")
    assert [n["content"] for n in notes] == ["node-3 restarted"]
    assert (
        refusal(lambda: client.rpost(f"incidents/{incident['id']}/notes", json={"content": " "}))[0]
        == 400
    )


def test_list_incidents_filters(pd: PagerDutySandbox, client: pagerduty.RestApiV2Client) -> None:
    rpc = new_incident(client, pd)
    validators = client.rpost(
        "incidents",
        json={
            "type": "incident",
            "title": "Missed attestations",
            "service": service_ref(pd, "validators"),
        },
    )
    client.rput(rpc, json={"type": "incident", "status": "acknowledged"})

    def ids(**params: Any) -> list[str]:
        return [i["id"] for i in client.list_all("incidents", params=params)]

    assert ids() == [rpc["id"], validators["id"]]
    assert ids(statuses=["acknowledged"]) == [rpc["id"]]
    assert ids(
        statuses=["triggered", "acknowledged"], service_ids=[validators["service"]["id"]]
    ) == [validators["id"]]
    assert ids(user_ids=[pd.account.user("dave").id]) == [validators["id"]]
    status, body = refusal(lambda: client.rget("incidents", params={"statuses[]": ["open"]}))
    assert status == 400 and body["error"]["code"] == 2001
    CLOCK.now = (NOW + timedelta(days=45)).timestamp()
    assert ids() == []  # the default window is the last 30 days
    assert ids(date_range="all") == [rpc["id"], validators["id"]]


# -- pagination ----------------------------------------------------------------------------


def test_pagination_through_iter_all(
    pd: PagerDutySandbox, client: pagerduty.RestApiV2Client
) -> None:
    for n in range(7):
        pd.account.add_user(f"temp{n}", f"Temp Responder {n}", f"temp{n}@nodeworks.example")
    names = [u["name"] for u in client.iter_all("users", page_size=3)]
    assert len(names) == 12 and names == sorted(names)
    pages = [(e.args["offset"], e.args["limit"]) for e in pd.requests("GET /users")]
    assert pages == [("0", "3"), ("3", "3"), ("6", "3"), ("9", "3")]
    assert client.get_total("users") == 12
    first = client.get("users", params={"limit": 500}).json()
    assert first["limit"] == 100 and first["more"] is False and first["total"] is None
    second = client.get("users", params={"limit": 5, "offset": 5, "total": "true"}).json()
    assert (len(second["users"]), second["more"], second["total"]) == (5, True, 12)
    assert client.get("users", params={"limit": 100, "offset": 9950}).status_code == 400


def test_bodies_must_be_json(pd: PagerDutySandbox) -> None:
    headers = {"Authorization": f"Token token={pd.api_token}", "From": ALICE}
    with httpx.Client(base_url=pd.rest_url, verify=pd.ssl_context(), headers=headers) as raw:
        form = raw.post("/incidents", content=b"title=x", headers={"Content-Type": "text/plain"})
        broken = raw.post("/incidents", content=b"{", headers={"Content-Type": "application/json"})
    assert form.status_code == broken.status_code == 400
    assert form.json()["error"]["errors"] == ["Content-Type must be application/json"]
    assert broken.json()["error"]["errors"] == ["The request body is not valid JSON"]
    assert pd.requests()[1].body == "{"  # kept, as text, for the log and the spec check
    assert pd.incidents() == []
