"""Builders shared by the alert tests: Alertmanager payloads as Alertmanager 0.25 sends them,
and settings with a few routing rules. (No tests here.)"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from incidentbot.config import Settings

TOKEN = "am-webhook-token-5f1c0e"
GO_ZERO = "0001-01-01T00:00:00Z"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

RULES: list[dict[str, Any]] = [
    {
        "name": "rpc-down",
        "matchers": ['alertname="RpcEndpointDown"'],
        "severity": "SEV1",
        "service": "rpc",
        "title": "{{ labels.alertname }} on {{ labels.instance }} ({{ labels.chain }})",
        "fields": {"chain": "{{ labels.chain }}"},
        "runbook": {"name": "restart-node", "params": {"node": "instance"}},
    },
    {
        "name": "node-lagging",
        "matchers": ['alertname=~"Node(Lagging|Behind)"', 'env!="staging"'],
        "severity": "SEV3",
        "service": "nodes",
    },
    {"name": "info-only", "matchers": ['severity="info"'], "declare": False},
]


def settings_for(tmp_path: Path, rules: list[dict[str, Any]] | None = None, **kw: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        alertmanager_token=TOKEN,
        alerts={"rules": RULES if rules is None else rules},
        **kw,
    )


def ts(when: datetime) -> str:
    """Go's RFC 3339 with nanoseconds, as Alertmanager writes it."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}123Z"


def fingerprint(labels: dict[str, str]) -> str:
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert(
    alertname: str,
    *,
    status: str = "firing",
    starts_at: datetime = T0,
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": annotations or {"summary": f"{alertname} fired"},
        "startsAt": ts(starts_at),
        "endsAt": ts(ends_at) if ends_at else GO_ZERO,
        "generatorURL": f"http://prometheus:9090/graph?g0.expr={alertname}",
        "fingerprint": fingerprint(all_labels),
    }


def resolved(a: dict[str, Any], ended: datetime | None = None) -> dict[str, Any]:
    started = datetime.fromisoformat(a["startsAt"][:26] + "+00:00")
    return {**a, "status": "resolved", "endsAt": ts(ended or started + timedelta(minutes=5))}


def notification(
    alerts: list[dict[str, Any]],
    *,
    group: str = "RpcEndpointDown",
    receiver: str = "incidentbot",
    **extra: Any,
) -> dict[str, Any]:
    group_labels = {"alertname": group}
    common = alerts[0]["labels"] if alerts else {}
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "receiver": receiver,
        "status": status,
        "groupKey": '{}/{severity=~"critical|page"}:{alertname="' + group + '"}',
        "groupLabels": group_labels,
        "commonLabels": {
            k: v for k, v in common.items() if all(x["labels"].get(k) == v for x in alerts)
        },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": alerts,
        **extra,
    }
