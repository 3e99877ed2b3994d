"""A realistic SEV1 for postmortem tests and the render benchmark: public RPC on mainnet serves
stale blocks; the on-call is paged and acknowledges; a restart runbook fails, a failover
runbook (approved by the commander, with a secret param) moves the traffic; people pin
messages, post updates, change severity and status, and resolve.

Everything goes through the real code: the incident service, paging flows, the runbook engine
with ledger workers (http.request against a local server, check.that, incident.note). Every
timestamp comes from a controlled clock (:func:`incidentbot.clock.set_clock`), so the same
scenario gives the same rows, and the same document, every time.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from incidentbot import clock, db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import ActionItem, Incident
from incidentbot.ledger.worker import WorkerPool
from incidentbot.paging import flows as paging
from incidentbot.paging.models import Page
from incidentbot.paging.pager_actions import mark_page
from incidentbot.people import lookup as people
from incidentbot.postmortems import lifecycle
from incidentbot.runbooks import approvals, planning, run_context, runtime
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks import view as views
from incidentbot.runbooks.actions import Services, registry
from incidentbot.runbooks.loader import load_dirs
from tests.egress_support import LOOPBACK
from tests.ledger_harness import EffectServer

DAY = "2025-03-11"  # a Tuesday

RESTART = """
name: restart-node
description: Restart a node's execution client and check that it catches up
params:
  node: {type: string, pattern: "^rpc-[0-9]+$", description: The node to restart}
  max_lag: {type: int, default: 8, min: 0, description: Blocks behind that still count as in sync}
target: node
approval: none
steps:
  - id: restart
    name: Restart geth on the node
    uses: http.request
    with:
      method: POST
      url: "{{ vars.lb.url }}"
      json: {token: "restart-{{ params.node }}"}
  - id: settle
    name: Let it settle
    uses: wait.sleep
    with: {seconds: 0}
  - id: in_sync
    name: Is the node in sync?
    uses: check.that
    with:
      that: "{{ params.max_lag >= 64 }}"
      otherwise: "{{ params.node }} is still 42 blocks behind the reference head: leave it drained"
"""

FAILOVER = """
name: failover-rpc
description: Move public RPC traffic from a failing primary to a healthy backup
params:
  primary: {type: string, pattern: "^rpc-[0-9]+$", description: The node serving traffic now}
  backup: {type: string, pattern: "^rpc-[0-9]+$", description: The node to send traffic to}
  api_key: {type: string, secret: true, description: The load balancer's admin API key}
  drain_cache: {type: bool, default: false, description: Also drop the primary's cache}
target: primary
approval: commander
steps:
  - id: check_backup
    name: Check that the backup answers
    uses: http.request
    with:
      method: POST
      url: "{{ vars.lb.url }}"
      json: {token: "check-{{ params.backup }}"}
  - id: move
    name: Send the traffic to the backup
    uses: http.request
    with:
      method: POST
      url: "{{ vars.lb.url }}"
      headers: {Authorization: "Bearer {{ params.api_key }}"}
      json: {token: "move-{{ params.primary }}-{{ params.backup }}"}
  - id: drain_cache
    name: Drop the primary's cache
    uses: http.request
    when: "{{ params.drain_cache }}"
    with:
      method: POST
      url: "{{ vars.lb.url }}"
      json: {token: "drain-{{ params.primary }}"}
  - id: note
    name: Note what changed
    uses: incident.note
    with:
      text: "Traffic moved from {{ params.primary }} to {{ params.backup }} by the failover runbook"
"""

PEOPLE = {
    "U01ALICE": ("alice", "Alice Nakamura"),
    "U01BOB": ("bob", "Bob Lee"),
    "U01DANA": ("dana", "Dana Okafor"),
}

SECTIONS = {
    "what_went_well": (
        "- The stale-head alert fired six minutes after the first stale block.\n"
        "- The failover runbook moved the traffic in under a minute once approved."
    ),
    "what_went_wrong": (
        "The restart runbook cannot tell a client that is resyncing from one that is stuck, "
        "so we spent three minutes on a restart that could not help.\n\n"
        "It was human error: Dana should have checked the peer count before restarting."
    ),
    "where_we_got_lucky": (
        "rpc-3 happened to be fully synced: it had been restored from a snapshot that morning."
    ),
}

# The impact in numbers, as Bob typed them (requests failed; 1h12m of degraded service).
IMPACT: dict[str, int | None] = {"requests_failed": 48_200, "degraded": 72 * 60}

ACTION_ITEMS = [
    ("Alert on a head that stops advancing, not only on lag", "U01DANA", "2025-03-18", "high"),
    ("Teach restart-node to check the peer count first", "carol", "2025-03-25", "medium"),
    ("Keep one backup node synced at all times (snapshot schedule)", None, None, "low"),
]


class Clock:
    """The controlled clock: every ``utcnow()`` returns the time last set."""

    def __init__(self, day: str = DAY):
        self.day = day
        self.now = self.at("00:00:00")

    def at(self, hms: str) -> datetime:
        self.now = datetime.fromisoformat(f"{self.day}T{hms}+00:00")
        return self.now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Scenario:
    engine: Engine
    settings: Settings
    clock: Clock
    ref: str = "INC-1"

    def incident(self) -> Incident:
        with db.transaction(self.engine) as s:
            return svc.get(s, self.ref)


def write_runbooks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "restart-node.yaml").write_text(textwrap.dedent(RESTART))
    (folder / "failover-rpc.yaml").write_text(textwrap.dedent(FAILOVER))
    return folder


def scenario_settings(tmp_path: Path, lb_url: str, **overrides: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        runbooks={
            "dirs": [str(write_runbooks(tmp_path / "runbooks"))],
            "vars": {"lb": {"url": lb_url}},
            "egress": LOOPBACK,
        },
        pagerduty={"services": {"rpc": {"service_id": "PRPC001"}}, "default_service": "rpc"},
        http={"public_url": "https://incidentbot.example.com"},
        slack_bot_token="xoxb-postmortem-test",
        **overrides,
    )


@contextmanager
def controlled_clock() -> Iterator[Clock]:
    c = Clock()
    clock.set_clock(c)
    try:
        yield c
    finally:
        clock.set_clock(None)


def wait_for(probe, *, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_runbook(
    sc: Scenario,
    name: str,
    requester: str,
    params: dict[str, str],
    *,
    approve: tuple[str, str] | None,
) -> views.RunView:
    """Plan and start a run as ``requester``, approve it (at the time given, as the user given)
    if it waits for approval, and work it to its end with one ledger worker."""
    engine, settings = sc.engine, sc.settings
    runbook = load_dirs(settings.runbooks.dirs, registry).get(name)
    assert runbook is not None, f"runbook {name} did not load"
    with db.transaction(engine) as s:
        info = run_context.incident_info(s, svc.get(s, sc.ref))
    plan = planning.plan(
        runbook,
        params,
        incident=info,
        requester=requester,
        variables=settings.runbooks.vars,
        services=Services(settings=settings),
    )
    with db.transaction(engine) as s:
        row = rb_engine.start(
            s,
            settings,
            plan,
            key=str(uuid.uuid4()),
            requester=requester,
            incident=svc.get(s, sc.ref),
            source="slack",
        )
        rid = row.run_id

    def state() -> views.RunView:
        with db.transaction(engine) as s:
            return views.load(s, rid)

    pool = WorkerPool(engine, threads=1, poll=0.02, only_run=rid).start()
    try:
        if approve is not None:
            wait_for(lambda: state().status == "awaiting_approval", what=f"{name} to ask")
            at, who = approve
            sc.clock.at(at)
            outcome = approvals.decide(engine, settings, rid, who, "approved")
            assert outcome.accepted, outcome.message
        return wait_for(lambda: (v := state()).ended and v, what=f"{name} to end")
    finally:
        pool.stop(timeout=10)


def build_incident(
    engine: Engine, settings: Settings, c: Clock, *, sections: bool = True
) -> Scenario:
    """The whole incident, from the first stale block to the written postmortem."""
    runtime.install(engine, settings)
    sc = Scenario(engine, settings, c)
    st = settings
    with db.transaction(engine) as s:
        now = c.at("09:30:00")
        for uid, (name, real) in PEOPLE.items():
            people.remember(s, uid, name, real, f"{name}@nodeworks.example", now=now)

    c.at("10:02:00")
    with db.transaction(engine) as s:
        inc = svc.declare(
            s,
            st,
            title="Public RPC serves stale blocks on mainnet",
            severity="SEV2",
            actor="U01ALICE",
            description="eth_blockNumber through rpc.nodeworks.example lags the chain head.",
            fields={
                "chain": "ethereum",
                "network": "mainnet",
                "client": "geth",
                "component": "public RPC load balancer",
            },
            impact_started_at=datetime(2025, 3, 11, 9, 52, tzinfo=UTC),
            detected_at=datetime(2025, 3, 11, 9, 58, 30, tzinfo=UTC),
        )
        # The channel as the bot creates it (the Slack side is not part of this scenario).
        inc.channel_id, inc.channel_name = "C01INC1", "inc-1-public-rpc-serves-stale-blocks"
        s.add(inc)

    # The page as paging.request_page and PagerActions.trigger record it (the PagerDuty side is
    # not part of this scenario: its durable run would need a pager to run against).
    c.at("10:03:10")
    with db.transaction(engine) as s:
        inc = svc.get(s, sc.ref)
        page = Page(
            incident_id=inc.id,  # type: ignore[arg-type]
            service="rpc",
            key=f"incidentbot-{inc.ref}-rpc",
            requested_by="U01ALICE",
            message="mainnet RPC stale heads",
            requested_at=c.now,
        )
        s.add(page)
        s.flush()
        page_id = page.id
        svc.record(
            s,
            inc,
            "page.requested",
            "U01ALICE",
            "Paging rpc: mainnet RPC stale heads",
            now=c.now,
            data={"service": "rpc", "page_id": page_id},
        )
    c.at("10:03:12")
    with db.transaction(engine) as s:
        row = s.get(Page, page_id)
        assert row is not None
        row.external_id, row.number = "Q1RPC4242", 4242
        row.url = "https://nodeworks.pagerduty.com/incidents/Q1RPC4242"
        row.status, row.triggered_at = "triggered", c.now
        s.add(row)
        svc.record(
            s,
            svc.get(s, sc.ref),
            "page.triggered",
            paging.BOT_ACTOR,
            "Paged rpc: PagerDuty #4242",
            now=c.now,
            data={"service": "rpc", "number": 4242, "url": row.url, "external_id": "Q1RPC4242"},
            source_key=f"page-triggered:{page_id}",
        )
    c.at("10:05:40")
    mark_page(
        engine, "Q1RPC4242", "acknowledged", "pagerduty", "Bob Lee", source_key="pd-webhook:ack-1"
    )

    c.at("10:06:00")
    with db.transaction(engine) as s:
        svc.assign_role(s, st, sc.ref, "commander", "U01BOB", actor="U01ALICE")
        svc.assign_role(s, st, sc.ref, "scribe", "carol", actor="U01BOB")
        svc.assign_role(s, st, sc.ref, "comms_lead", "U01ALICE", actor="U01BOB")
    c.at("10:07:30")
    with db.transaction(engine) as s:
        svc.set_status(s, st, sc.ref, "investigating", actor="U01BOB")
    c.at("10:09:20")
    with db.transaction(engine) as s:
        svc.add_note(
            s,
            st,
            sc.ref,
            "rpc-1 head stuck at 21,993,004 while its peers are at 21,993,046; "
            "<@U01BOB> is reading the geth logs",
            actor="U01DANA",
            occurred_at=datetime(2025, 3, 11, 10, 8, 45, tzinfo=UTC),
            kind="timeline.pinned",
            source_key="pin:C01INC1:1741687725.000100",
        )
    c.at("10:12:00")
    with db.transaction(engine) as s:
        svc.set_severity(s, st, sc.ref, "SEV1", actor="U01BOB")
    c.at("10:13:00")
    with db.transaction(engine) as s:
        # What effects.post_update records (posting it is the Slack side's durable run).
        svc.add_note(
            s,
            st,
            sc.ref,
            "Public RPC on mainnet serves blocks about 40 behind. We are restarting the "
            "primary node and preparing a failover.",
            actor="U01ALICE",
            kind="status.update",
        )

    c.at("10:14:00")
    run_runbook(sc, "restart-node", "U01DANA", {"node": "rpc-1"}, approve=None)
    c.at("10:16:00")
    with db.transaction(engine) as s:
        svc.add_note(
            s, st, sc.ref, "restart did not bring rpc-1 back in sync; failing over", actor="carol"
        )
    c.at("10:17:00")
    run_runbook(
        sc,
        "failover-rpc",
        "U01DANA",
        {"primary": "rpc-1", "backup": "rpc-3", "api_key": "lb-admin-9f8e7d6c5b4a3921"},
        approve=("10:18:30", "U01BOB"),
    )
    c.at("10:21:00")
    with db.transaction(engine) as s:
        svc.set_status(s, st, sc.ref, "monitoring", actor="U01BOB")
    c.at("10:24:10")
    with db.transaction(engine) as s:
        svc.add_note(
            s,
            st,
            sc.ref,
            "Through the load balancer: head 21,993,161 on rpc-3, p99 180 ms",
            actor="U01DANA",
            occurred_at=datetime(2025, 3, 11, 10, 23, 55, tzinfo=UTC),
            kind="timeline.pinned",
            source_key="pin:C01INC1:1741688635.000200",
        )
    c.at("10:35:00")
    with db.transaction(engine) as s:
        svc.set_severity(s, st, sc.ref, "SEV2", actor="U01BOB")
    c.at("10:40:00")
    with db.transaction(engine) as s:
        svc.add_note(
            s,
            st,
            sc.ref,
            "Public RPC is back to normal on a backup node. Watching it.",
            actor="U01ALICE",
            kind="status.update",
        )
    c.at("10:52:00")
    with db.transaction(engine) as s:
        svc.resolve(
            s,
            st,
            sc.ref,
            "Failed public RPC over from rpc-1 to rpc-3; rpc-1 stays drained until geth resyncs.",
            actor="U01BOB",
        )

    c.at("11:30:00")
    with db.transaction(engine) as s:
        inc = svc.get(s, sc.ref)
        for text, owner, due, priority in ACTION_ITEMS:
            s.add(
                ActionItem(
                    incident_id=inc.id,  # type: ignore[arg-type]
                    text=text,
                    owner=owner,
                    due_date=date.fromisoformat(due) if due else None,
                    priority=priority,
                    created_by="U01BOB",
                    created_at=c.now,
                    updated_at=c.now,
                )
            )
    if sections:
        c.at("14:00:00")
        with db.transaction(engine) as s:
            inc = svc.get(s, sc.ref)
            for key, text in SECTIONS.items():
                lifecycle.edit_section(s, st, inc, key, text, actor="U01BOB", now=c.now)
            lifecycle.edit_impact(s, st, inc, IMPACT, actor="U01BOB", now=c.now)
    return sc


@contextmanager
def effect_server() -> Iterator[EffectServer]:
    srv = EffectServer().start()
    try:
        yield srv
    finally:
        srv.stop()
