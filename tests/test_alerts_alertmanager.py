"""A real Prometheus Alertmanager, started on loopback, notifying the running bot.

Alerts are pushed to Alertmanager's v2 API exactly as Prometheus pushes them; Alertmanager
groups them and posts its webhook to the bot, with a bearer token on one route and basic auth
on another. Needs the ``prometheus-alertmanager`` binary (Debian package of that name): without
it the test is skipped with a message, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlmodel import select

from incidentbot import db
from incidentbot.alerts.models import AlertDelivery, AlertRecord
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from tests.slack_harness import running_bot, wait_for
from tests.test_alerts_support import RULES, TOKEN


def _binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found:
        return found
    message = "Alertmanager not installed (Debian: apt-get install prometheus-alertmanager)"
    if os.environ.get("CI"):
        pytest.fail(f"CI needs it: {message}")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(webhook: str) -> dict:
    receiver = {"url": webhook, "send_resolved": True}
    return {
        "route": {
            "receiver": "bot-bearer",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            "routes": [{"receiver": "bot-basic", "matchers": ['team="validators"']}],
        },
        "receivers": [
            {
                "name": "bot-bearer",
                "webhook_configs": [
                    {**receiver, "http_config": {"authorization": {"credentials": TOKEN}}}
                ],
            },
            {
                "name": "bot-basic",
                "webhook_configs": [
                    {
                        **receiver,
                        "http_config": {
                            "basic_auth": {"username": "alertmanager", "password": TOKEN}
                        },
                    }
                ],
            },
        ],
    }


@contextmanager
def alertmanager(binary: str, tmp_path: Path, webhook: str) -> Iterator[str]:
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(_config(webhook)))
    port = _free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no HA gossip: nothing listens beyond loopback
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"alertmanager exited: {(tmp_path / 'alertmanager.log').read_text()}"
                )
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("alertmanager did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _push(url: str, alerts: list[dict]) -> None:
    response = httpx.post(f"{url}/api/v2/alerts", json=alerts, timeout=5)
    assert response.status_code == 200, response.text


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _alert(name: str, ends: datetime | None = None, **labels: str) -> dict:
    started = datetime.now(UTC) - timedelta(minutes=3)
    body = {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} on {labels.get('instance', '?')}"},
        "startsAt": _iso(started),
        "generatorURL": "http://prometheus.local:9090/graph?g0.expr=up",
    }
    if ends is not None:
        body["endsAt"] = _iso(ends)
    return body


def test_a_real_alertmanager_declares_attaches_and_resolves(engine, tmp_path):
    """Two groups (one per route): two incidents; a grown group attaches; a resolve shows."""
    binary = _binary()
    settings = {"alertmanager_token": TOKEN, "alerts": {"rules": RULES}, "workers": 1}
    with running_bot(engine, **settings) as (_bot, sandbox):
        webhook = sandbox.driver.bot_url.replace("/slack/events", "/webhooks/alertmanager")
        with alertmanager(binary, tmp_path, webhook) as am:
            rpc = [
                _alert("RpcEndpointDown", instance=f"rpc-{i}:8545", chain="ethereum")
                for i in (1, 2)
            ]
            validators = _alert("NodeLagging", instance="lighthouse-1", team="validators")
            _push(am, [*rpc, validators])

            def declared() -> list[Incident] | None:
                with db.transaction(engine) as s:
                    found = list(s.exec(select(Incident).order_by(Incident.number)))
                    attached = s.exec(
                        select(AlertRecord).where(AlertRecord.incident_id.is_not(None))  # type: ignore[union-attr]
                    ).all()
                return found if len(found) == 2 and len(attached) == 3 else None

            incidents = wait_for(declared, what="Alertmanager's notifications to declare")
            by_title = {i.title: i for i in incidents}
            rpc_incident = next(i for t, i in by_title.items() if t.startswith("RpcEndpointDown"))
            assert rpc_incident.severity == "SEV1" and rpc_incident.declared_by == "alertmanager"
            lagging = next(i for t, i in by_title.items() if t.startswith("NodeLagging"))
            assert lagging.severity == "SEV3"  # via the basic-auth route

            # a third endpoint goes down: Alertmanager sends the grown group, which attaches
            _push(am, [_alert("RpcEndpointDown", instance="rpc-3:8545", chain="ethereum")])

            def attached() -> int | None:
                with db.transaction(engine) as s:
                    n = len(
                        s.exec(
                            select(AlertRecord).where(AlertRecord.incident_id == rpc_incident.id)
                        ).all()
                    )
                return n if n == 3 else None

            wait_for(attached, what="the third alert to join the RPC incident")

            # Prometheus says the first RPC endpoint recovered
            _push(am, [_alert("RpcEndpointDown", ends=datetime.now(UTC), instance="rpc-1:8545",
                              chain="ethereum")])  # fmt: skip

            def resolved_on_timeline() -> list[str] | None:
                with db.transaction(engine) as s:
                    events = svc.timeline(s, svc.get(s, rpc_incident.ref))
                kinds = [e.kind for e in events if e.kind.startswith("alert.")]
                return kinds if "alert.resolved" in kinds else None

            kinds = wait_for(resolved_on_timeline, what="the resolved notification")
            assert sorted(kinds) == ["alert.firing"] * 3 + ["alert.resolved"]

    with db.transaction(engine) as s:
        rows = list(s.exec(select(AlertRecord)))
        receivers = {d.receiver for d in s.exec(select(AlertDelivery))}
    assert receivers == {"bot-bearer", "bot-basic"}
    assert {r.labels["instance"]: r.status for r in rows} == {
        "rpc-1:8545": "resolved",
        "rpc-2:8545": "firing",
        "rpc-3:8545": "firing",
        "lighthouse-1": "firing",
    }
    assert all(len(r.fingerprint) == 16 for r in rows)  # Alertmanager's own fingerprints
    assert len({r.incident_id for r in rows}) == 2
