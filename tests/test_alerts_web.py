"""``POST /webhooks/alertmanager``: authentication, refusals that record nothing, status codes
Alertmanager acts on (it retries 5xx, not 4xx)."""

from __future__ import annotations

import base64
import json

import pytest
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from incidentbot.alerts.models import AlertDelivery, AlertRecord
from incidentbot.config import Settings
from incidentbot.metrics import Metrics
from incidentbot.web.alertmanager import MAX_BODY, PATH, alertmanager_route
from incidentbot.web.app import create_app
from tests.conftest import count
from tests.test_alerts_support import TOKEN, alert, notification, settings_for

TABLES = ("alert_delivery", "alert", "alert_group", "incident", "timeline_event")


def client_for(engine, settings: Settings, on_declare=None) -> TestClient:
    app = Starlette(routes=[alertmanager_route(engine, settings, on_declare=on_declare)])
    return TestClient(app)


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def recorded(engine) -> dict[str, int]:
    return {t: count(engine, t) for t in TABLES}


@pytest.fixture
def client(engine, tmp_path):
    with client_for(engine, settings_for(tmp_path)) as c:
        yield c


WRONG_CREDENTIALS = {
    "none": {},
    "wrong bearer": {"Authorization": "Bearer wrong-token"},
    "longer bearer": {"Authorization": f"Bearer {TOKEN}x"},
    "other scheme": {"Authorization": f"Token {TOKEN}"},
    "basic, wrong password": basic("alertmanager", "wrong"),
    "basic, wrong user": basic("mallory", TOKEN),
    "basic, not base64": {"Authorization": "Basic not-base64!!"},
}


def test_wrong_or_missing_credentials_get_401_and_record_nothing(client, engine):
    for case, headers in WRONG_CREDENTIALS.items():
        response = client.post(PATH, json=notification([alert("RpcEndpointDown")]), headers=headers)
        assert response.status_code == 401, case
        assert "Bearer" in response.headers["www-authenticate"]
        assert "credentials" in response.json()["error"]
    assert set(recorded(engine).values()) == {0}


def test_without_a_configured_token_nothing_is_accepted(engine, tmp_path):
    for token in (None, "", "  "):
        settings = Settings(data_dir=tmp_path, alertmanager_token=token, alerts={"rules": []})
        with client_for(engine, settings) as c:
            for headers in (BEARER, {"Authorization": "Bearer "}, basic("alertmanager", "")):
                response = c.post(PATH, json=notification([alert("X")]), headers=headers)
                assert response.status_code == 503
                assert "INCIDENTBOT_ALERTMANAGER_TOKEN" in response.json()["error"]
    assert set(recorded(engine).values()) == {0}


MALFORMED = {
    "truncated": (b"{not json", "the body is not valid JSON"),
    "not utf-8": (b"\xff\xfe", "the body is not valid JSON"),
    "array": (b"[]", "must be a JSON object"),
    "no group key": (
        json.dumps({"status": "firing", "alerts": []}).encode(),
        "groupKey: is required",
    ),
    "bad time": (
        json.dumps(notification([{**alert("X"), "startsAt": "soon"}])).encode(),
        "alerts.0.startsAt: 'soon' is not an RFC 3339 time",
    ),
}


def test_malformed_payloads_get_400_with_the_reason_and_record_nothing(client, engine):
    for case, (body, message) in MALFORMED.items():
        response = client.post(
            PATH, content=body, headers={**BEARER, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, case
        assert message in response.json()["error"], case
    assert set(recorded(engine).values()) == {0}


def test_an_oversized_body_is_refused(client, engine):
    response = client.post(PATH, content=b"x" * (MAX_BODY + 1), headers=BEARER)
    assert response.status_code == 413
    assert set(recorded(engine).values()) == {0}


def test_bearer_and_basic_auth_are_both_accepted(client, engine):
    response = client.post(
        PATH, json=notification([alert("RpcEndpointDown", instance="rpc-1")]), headers=BEARER
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["declared"], body["incident"], body["new"]) == (True, True, "INC-1", 1)

    response = client.post(
        PATH,
        json=notification([alert("RpcEndpointDown", instance="rpc-2")]),
        headers=basic("alertmanager", TOKEN),
    )
    assert response.status_code == 200, response.text
    assert (response.json()["incident"], response.json()["declared"]) == ("INC-1", False)
    assert count(engine, "alert_delivery") == 2 and count(engine, "incident") == 1


def test_a_processing_failure_is_a_500_so_alertmanager_retries(engine, tmp_path):
    def broken(session, settings, incident, actor, service):
        raise RuntimeError("database connection lost")

    with client_for(engine, settings_for(tmp_path), on_declare=broken) as c:
        response = c.post(PATH, json=notification([alert("RpcEndpointDown")]), headers=BEARER)
    assert response.status_code == 500
    body = response.json()
    assert "stored, not processed" in body["error"]
    assert count(engine, "alert_delivery") == 1 and count(engine, "incident") == 0
    with Session(engine) as s:  # the id in the answer is the stored delivery's, marked failed
        stored = s.exec(select(AlertDelivery)).one()
    assert (body["delivery"], stored.failed) == (stored.id, True)
    assert "database connection lost" in (stored.outcome or "")

    with client_for(engine, settings_for(tmp_path)) as c:  # the retry
        response = c.post(PATH, json=notification([alert("RpcEndpointDown")]), headers=BEARER)
    # The failed attempt's number is given back on SQLite, left unused on PostgreSQL.
    ref = "INC-1" if engine.dialect.name == "sqlite" else "INC-2"
    assert response.status_code == 200 and response.json()["incident"] == ref


def test_a_declare_refused_by_policy_is_a_500_with_the_reason(engine, tmp_path):
    settings = settings_for(
        tmp_path, fields=[{"name": "network", "label": "Network", "required": True}],
        rules=[{"name": "any"}],
    )  # fmt: skip
    with client_for(engine, settings) as c:
        response = c.post(PATH, json=notification([alert("X")]), headers=BEARER)
    assert response.status_code == 500
    assert "missing required field(s): network" in response.json()["error"]
    assert count(engine, "alert") == 1  # the alert is kept, with the reason


def test_invisible_controls_in_an_alert_are_removed_before_anything_is_stored(client, engine):
    """NUL (PostgreSQL refuses it in text), a right-to-left override and zero-width characters
    sent by an alerting system: accepted, stored without them."""
    hostile = alert(
        "RpcEndpointDown",
        annotations={"summary": "rpc\x00-2 \u202edown\u202c on main\u200bnet"},
        instance="rpc\u200b-2",
    )
    response = client.post(PATH, json=notification([hostile]), headers=BEARER)
    assert response.status_code == 200, response.text
    with Session(engine) as s:
        stored = s.exec(select(AlertRecord)).one()
    assert stored.annotations["summary"] == "rpc-2 down on mainnet"
    assert stored.labels["instance"] == "rpc-2"


def test_a_lone_surrogate_in_an_alert_is_replaced_not_a_500(client, engine):
    """JSON may spell half of a UTF-16 pair alone ("\\ud800"): no database can store it, so it
    becomes U+FFFD and the alert is stored, where it used to fail on every retry."""
    body = json.dumps(notification([alert("RpcEndpointDown", instance="rpc-9")]))
    body = body.replace('"rpc-9"', '"rpc-9\\ud800"').replace('fired"', 'fired \\udc00"')
    headers = {**BEARER, "Content-Type": "application/json"}
    response = client.post(PATH, content=body.encode(), headers=headers)
    assert response.status_code == 200, response.text
    with Session(engine) as s:
        stored = s.exec(select(AlertRecord)).one()
    assert stored.labels["instance"] == "rpc-9\ufffd"
    assert stored.annotations["summary"].endswith("fired \ufffd")


def test_metrics_count_the_cpu_time_the_deliveries_took(engine, tmp_path):
    """Operators (and the ingest benchmark) can tell the ingest's own CPU time from the rest
    of the process's: the request threads count theirs in ``/metrics``. (No rule declares:
    stored, not declared.)"""
    settings = settings_for(tmp_path, rules=[])
    app = create_app(bolt=None, engine=engine, metrics=Metrics(engine, settings), settings=settings)

    def counted(c: TestClient) -> float:
        lines = c.get("/metrics").text.splitlines()
        [line] = [x for x in lines if x.startswith("incidentbot_alert_ingest_cpu_seconds_total ")]
        return float(line.split()[1])

    with TestClient(app) as c:
        assert counted(c) == 0
        alerts = [alert("RpcEndpointDown", instance=f"rpc-{n}:8545") for n in range(50)]
        response = c.post(PATH, json=notification(alerts), headers=BEARER)
        assert response.status_code == 200, response.text
        assert (response.json()["new"], count(engine, "alert")) == (50, 50)
        assert counted(c) > 0
