"""The incident use cases from each door: what the CLI queues and says, an alert's declare
paging by policy, Slack's new ``milestone`` and ``close``, and refusals that change nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.ledger import registry
from incidentbot.slack.grammar import Command, Usage, help_text, parse
from incidentbot.usecases import incidents as uc
from incidentbot.usecases.core import Actor, Core
from tests.conftest import count
from tests.slack_harness import settled, wait_for
from tests.test_alerts_support import RULES, TOKEN, alert, notification
from tests.test_paging_e2e import pages, paging_bot, pd_incidents

ALICE = Actor("alice", "cli")
PAGERDUTY = {"services": {"rpc": {"service_id": "PRPC"}, "validators": {"service_id": "PVAL"}}}


@pytest.fixture
def configured(cli, tmp_path, monkeypatch):
    """The CLI with Slack and PagerDuty configured, and no bot running."""
    config = tmp_path / "cli.yml"
    config.write_text(json.dumps({"pagerduty": {**PAGERDUTY, "default_service": "rpc"}}))
    monkeypatch.setenv("INCIDENTBOT_CONFIG", str(config))
    monkeypatch.setenv("INCIDENTBOT_SLACK_BOT_TOKEN", "xoxb-not-used-here")
    return cli


def test_a_cli_declare_queues_the_channel_and_the_page_and_says_so(configured, engine):
    code, out, err = configured("incident", "declare", "--sev", "1", "RPC down")
    assert code == 0, err
    assert "Declared INC-1 (SEV1): RPC down" in out and "Paging rpc on-call." in out
    assert "Queued for the bot: create and set up the incident channel" in out
    assert "page on-call" in out and "`incidentbot runs list --incident INC-1`" in out
    kinds = {r for (r,) in _rows(engine, "SELECT kind FROM ledger_run")}
    assert kinds == {"incident.channel", "incident.refresh", "incident.page"}

    # Nobody carries them out: --wait says so once its time is up, and exits 0.
    code, out, err = configured("incident", "declare", "--wait", "--timeout", "0", "Indexer lag")
    assert code == 0, err
    assert "Still queued after 0s: create and set up the incident channel" in out
    assert "Is `incidentbot serve` or `incidentbot worker` running against this database?" in out
    assert "Channel:" not in out


def test_cli_update_and_page(configured, engine):
    assert configured("incident", "declare", "--sev", "3", "Indexer lagging")[0] == 0
    code, out, _ = configured("incident", "update", "INC-1", "Reindexing", "from", "block", "21M")
    assert code == 0
    assert out.strip() == (
        "INC-1: status update recorded: posting it in the channel and #incidents"
    )
    code, out, _ = configured("incident", "page", "INC-1", "validators", "-m", "attestations")
    assert (code, out.strip()) == (0, "INC-1: paging validators on-call (queued for the bot)")
    code, out, _ = configured("incident", "page", "INC-1", "validators")
    assert (code, out.strip()) == (0, "INC-1: validators is already paged (requested)")
    code, _, err = configured("incident", "page", "INC-1", "bridges")
    assert code == 1 and "unknown service 'bridges': configured are rpc, validators" in err
    with db.transaction(engine) as s:
        events = svc.timeline(s, svc.get(s, "INC-1"))
    shown = ("status.update", "page.requested")
    assert [(e.kind, e.summary) for e in events if e.kind in shown] == [
        ("status.update", "Reindexing from block 21M"),
        ("page.requested", "Paging validators: attestations"),
    ]  # fmt: skip


def test_without_slack_the_cli_records_only(cli, engine):
    code, out, _ = cli("incident", "declare", "--sev", "1", "RPC down")
    assert code == 0 and "Queued" not in out and "Paging" not in out
    assert cli("incident", "update", "INC-1", "Failing over")[1].strip() == (
        "INC-1: status update recorded"
    )
    assert count(engine, "ledger_run") == 0
    code, out, _ = cli("incident", "declare", "--wait", "Indexer lag")
    assert code == 0 and "Nothing to follow: Slack is not configured here" in out


@pytest.fixture
def chat_actions() -> None:
    # The use cases queue runs here with no bot in the process: their actions must be known.
    for name in ("chat.open_channel", "chat.header", "chat.digest", "pager.resolve"):
        if registry.get(name) is None:
            registry.register(name, lambda *_a, **_k: None, idempotent=True)


def test_a_refused_change_changes_nothing_and_queues_nothing(engine, chat_actions):
    core = Core(Settings(pagerduty=PAGERDUTY), engine)
    out = uc.declare(core, ALICE, title="RPC down", severity="sev2")
    assert (out.ref, out.paged, out.channel_queued) == ("INC-1", None, True)  # no default service
    uc.resolve(core, ALICE, "INC-1", "failed over")
    uc.close(core, ALICE, "INC-1")
    events, runs = count(engine, "timeline_event"), count(engine, "ledger_run")
    refusals = [
        (lambda: uc.set_severity(core, ALICE, "INC-1", "1"), "INC-1 is closed"),
        (lambda: uc.set_status(core, ALICE, "INC-1", "monitoring"), "INC-1 is closed"),
        (lambda: uc.close(core, ALICE, "INC-1"), "INC-1 is already closed"),
        (lambda: uc.set_milestone(core, ALICE, "INC-1", "lunch", utcnow()), "unknown milestone"),
        (lambda: uc.page(core, ALICE, "INC-1", "bridges"), "unknown service 'bridges'"),
        (lambda: uc.update(core, ALICE, "INC-9", "text"), "no incident INC-9"),
    ]
    for call, message in refusals:
        with pytest.raises(DomainError, match=message):
            call()
    assert (count(engine, "timeline_event"), count(engine, "ledger_run")) == (events, runs)
    reopened = uc.reopen(core, ALICE, "INC-1", "alerts again")
    assert (reopened.old, reopened.status) == ("closed", "investigating")


SETTINGS = Settings(pagerduty=PAGERDUTY)


def p(text: str, in_channel: bool = True) -> Command | Usage:
    return parse(text, settings=SETTINGS, in_incident_channel=in_channel)


def test_slack_milestone_and_close_parse_and_refuse_clearly():
    before = utcnow()
    got = p("milestone impact-started 20m ago")
    assert isinstance(got, Command) and got.args["milestone"] == "impact_started"
    assert before - timedelta(minutes=20, seconds=5) < got.args["at"] <= utcnow()
    at = p("milestone Mitigated 2026-11-22T05:10Z")
    assert isinstance(at, Command) and at.args["at"].isoformat() == "2026-11-22T05:10:00+00:00"
    assert p("close") == Command("close")
    for text, error in [
        ("milestone", "`milestone` needs a milestone (impact-started, detected,"),
        ("milestone lunch now", "Unknown milestone 'lunch'"),
        ("milestone detected", "`milestone detected` needs a time"),
        ("milestone detected soon", "Invalid time 'soon'"),
        ("close now", "`close` takes no arguments"),
    ]:
        refused = p(text)
        assert isinstance(refused, Usage) and refused.error.startswith(error), (text, refused)
    elsewhere = p("close", in_channel=False)
    assert isinstance(elsewhere, Usage) and "only works in an incident's channel" in elsewhere.error
    lines = help_text(in_incident_channel=True)
    assert "`/incident close`: close a resolved incident" in lines
    assert "/incident milestone &lt;impact-started|detected|acknowledged|mitigated&gt;" in lines


def test_an_alert_declare_pages_the_rule_service_by_severity_policy(engine):
    # The rpc-down rule declares SEV1 (a paging severity) for service rpc.
    with paging_bot(engine, alertmanager_token=TOKEN, alerts={"rules": RULES}) as (_bot, slack, pd):
        base = slack.driver.bot_url.removesuffix("/slack/events")
        body = notification([alert("RpcEndpointDown", instance="rpc-1:8545", chain="ethereum")])
        response = httpx.post(
            f"{base}/webhooks/alertmanager",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code == 200 and response.json()["declared"], response.text
        page = wait_for(lambda: [p for p in pages(engine) if p.status == "triggered"])[0]
        assert (page.service, page.requested_by) == ("rpc", "alertmanager")
        assert len(pd_incidents(pd, "incidentbot-INC-1-rpc")) == 1
        settled(engine)
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
        assert inc.channel_id and "rpc: triggered" in slack.transcript(inc.channel_id)


def _rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]
