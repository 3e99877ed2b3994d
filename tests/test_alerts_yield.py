"""An Alertmanager notification lets the Slack answers being sent go first, also when one
begins while the notification is already being processed: it asks again at each boundary of
its ingest (before the payload's walk, before its transaction), never inside the transaction,
and all its waits together are bounded. Ordered with gates: an answer held open."""

from __future__ import annotations

import threading

import pytest

from incidentbot import priority
from incidentbot.alerts import service
from incidentbot.web import alertmanager
from tests.conftest import count
from tests.test_alerts_support import alert, notification, settings_for
from tests.test_alerts_web import BEARER, client_for
from tests.test_storage_concurrency import GATE, answering


def _answer_begins_during_the_walk(monkeypatch, order):
    """Patch the payload's walk so that a Slack answer begins while it runs (the answer
    begins after the ingest's first wait); returns the answer's thread and the event that
    ends it, once it has begun."""
    real_parse = service.parse
    released: list[tuple[threading.Thread, threading.Event]] = []

    def walk_then_an_answer_begins(data):
        parsed = real_parse(data)
        released.append(answering(order))
        order.append("walked")
        return parsed

    monkeypatch.setattr(service, "parse", walk_then_an_answer_begins)
    return released


def test_an_answer_that_begins_during_the_walk_goes_before_the_transaction(
    engine, tmp_path, monkeypatch
):
    order: list[str] = []
    released = _answer_begins_during_the_walk(monkeypatch, order)
    done: list[int] = []

    def deliver() -> None:
        with client_for(engine, settings_for(tmp_path)) as client:
            body = notification([alert("RpcEndpointDown", instance="rpc-1:8545")])
            done.append(client.post(alertmanager.PATH, json=body, headers=BEARER).status_code)
        order.append("delivered")

    sender = threading.Thread(target=deliver)
    sender.start()
    seen = threading.Event()
    for _ in range(int(GATE * 1000)):  # the ingest waits for the answer (fails, not hangs)
        if priority.deferred() >= 1 or not sender.is_alive():
            break
        seen.wait(0.001)
    assert priority.deferred() == 1, order
    # walked, waiting: its transaction has not begun, nothing is stored yet
    assert order == ["walked"]
    assert count(engine, "alert_delivery") == 0 and count(engine, "alert") == 0
    slack, release = released[0]
    release.set()
    for th in (slack, sender):
        th.join(GATE)
    assert order == ["walked", "answered", "delivered"], order
    assert done == [200]
    assert count(engine, "alert_delivery") == 1 and count(engine, "alert") == 1


def test_the_waits_of_one_notification_are_bounded_together(engine, tmp_path, monkeypatch):
    """With the answer held open throughout, a notification whose waits are used up goes on
    at every later boundary: stored while the answer is still being sent."""
    order: list[str] = []
    released = _answer_begins_during_the_walk(monkeypatch, order)
    try:
        out = service.ingest(
            engine,
            settings_for(tmp_path),
            notification([alert("RpcEndpointDown", instance="rpc-2:8545")]),
            pause=priority.yielding(0.0),
        )
        assert priority.pending() == 1 and order == ["walked"]  # still answering
        assert out.new == 1 and count(engine, "alert") == 1
    finally:
        for slack, release in released:
            release.set()
            slack.join(GATE)


@pytest.fixture(autouse=True)
def _no_answer_left():
    yield
    assert priority.pending() == 0
