"""Prometheus metrics, on a registry of our own (so tests can build several apps).

Counters and histograms are updated as things happen; the gauges that describe the database
(open incidents by severity, ledger runs by status) are read at scrape time, so they are never
stale and cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident
from incidentbot.ledger.models import Run

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, engine: Engine, settings: Settings):
        self.registry = CollectorRegistry()
        self.commands = Histogram(
            "incidentbot_command_seconds",
            "Time to handle a /incident subcommand, by subcommand",
            ["subcommand"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ack = Histogram(
            "incidentbot_ack_seconds",
            "Time from receiving a Slack request to acknowledging it",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.slack_calls = Counter(
            "incidentbot_slack_api_calls_total",
            "Slack Web API calls by method and outcome (ok or Slack's error code)",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.slack_errors = Counter(
            "incidentbot_slack_api_errors_total",
            "Slack Web API calls that failed, by method",
            ["method"],
            registry=self.registry,
        )
        self.alert_ingest_cpu = Counter(
            "incidentbot_alert_ingest_cpu_seconds",
            "CPU time the request threads spent decoding and ingesting Alertmanager "
            "notifications (the channel work their incidents queue runs in the ledger workers)",
            registry=self.registry,
        )
        self.registry.register(_DatabaseCollector(engine, settings))

    def observe_slack_call(self, method: str, outcome: str, _seconds: float) -> None:
        self.slack_calls.labels(method, outcome).inc()
        if outcome != "ok":
            self.slack_errors.labels(method).inc()


class _DatabaseCollector(Collector):
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        terminal = [s.name for s in self.settings.statuses if s.terminal]
        with db.read(self.engine) as s:
            by_sev = dict(
                s.exec(
                    select(Incident.severity, func.count())
                    .where(col(Incident.status).not_in(terminal))
                    .group_by(Incident.severity)
                ).all()
            )
            by_status = dict(s.exec(select(Run.status, func.count()).group_by(Run.status)).all())
        open_incidents = GaugeMetricFamily(
            "incidentbot_open_incidents", "Open incidents by severity", labels=["severity"]
        )
        for sev in self.settings.severity_names():
            open_incidents.add_metric([sev], by_sev.get(sev, 0))
        yield open_incidents
        runs = GaugeMetricFamily(
            "incidentbot_ledger_runs", "Durable runs by status", labels=["status"]
        )
        for status, n in sorted(by_status.items()):
            runs.add_metric([status], n)
        yield runs
