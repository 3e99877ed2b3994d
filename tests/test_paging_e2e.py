"""Paging through the local PagerDuty-compatible server, driven from Slack, over real sockets."""

from __future__ import annotations

import json
from contextlib import contextmanager

import httpx
import pytest
from sqlmodel import select

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.paging.models import Page
from incidentbot.sandbox.pagerduty.server import PagerDutySandbox
from tests.conftest import count
from tests.slack_harness import (
    channel_of,
    incident,
    running_bot,
    settled,
    timeline_kinds,
    wait_for,
)

SECRET = "whsec-test-0123456789"


@contextmanager
def paging_bot(
    engine,
    from_email="alice@nodeworks.example",
    routed=(),
    declaring=(),
    declare_severity=None,
    attaching=(),
    **overrides,
):
    with PagerDutySandbox() as pd:
        d = pd.describe()
        services = {
            s["name"]: {
                "service_id": s["id"],
                "escalation_policy_id": s["escalation_policy_id"],
                "slack_oncall_group": "S0ONCALLRPC",
                "declare": s["name"] in declaring,
                "declare_severity": declare_severity,
                "attach": s["name"] in attaching,
            }
            for s in d["services"]
        }
        config = {
            "api_url": d["rest_url"],
            "events_url": d["events_url"],
            "ca_file": str(d["ca_file"]),
            "from_email": from_email,
            "default_service": "rpc",
            "services": services,
        }
        keys = ",".join(
            f"{s['name']}={s['routing_key']}" for s in d["services"] if s["name"] in routed
        )
        with running_bot(
            engine,
            pagerduty_routing_keys=keys or None,
            pagerduty=config,
            pagerduty_api_token=d["api_token"],
            pagerduty_webhook_secret=SECRET,
            **overrides,
        ) as (bot, slack):
            bot.pager.client.timeout = 2
            base = slack.driver.bot_url.removesuffix("/slack/events")
            pd.subscribe(f"{base}/webhooks/pagerduty", secret=SECRET)
            yield bot, slack, pd


def say(slack, text, channel="incidents", user="alice"):
    ack = slack.driver.slash_command(text, user=user, channel=channel)
    assert ack.status == 200, ack.body
    return json.loads(ack.body)


def pages(engine) -> list[Page]:
    with db.transaction(engine) as s:
        return list(s.exec(select(Page)))


def notes(pd, incident_id):
    return pd.rest_client().rget(f"/incidents/{incident_id}/notes")


def pd_incidents(pd, key=None):
    return [i for i in pd.incidents() if key is None or i.get("incident_key") == key]


def test_sev1_declare_pages_the_named_service_and_an_ack_comes_back(engine):
    with paging_bot(engine) as (_bot, slack, pd):
        body = say(slack, "declare sev1 service:validators Missed attestations on 40% of keys")
        assert "Paging *validators* on-call." in body["text"]
        ch = channel_of(engine)
        page = wait_for(lambda: [p for p in pages(engine) if p.status == "triggered"])[0]
        assert page.service == "validators" and page.number is not None
        opened = pd_incidents(pd, "incidentbot-INC-1-validators")
        assert len(opened) == 1 and opened[0]["status"] == "triggered"
        wait_for(
            lambda: (
                f"#{ch}"
                in json.dumps([pd.incident(page.external_id)["body"], notes(pd, page.external_id)])
            ),
            what="the channel linked in the page",
        )

        pd.acknowledge(page.external_id, by="bob")
        assert pd.wait_for_webhooks()
        wait_for(lambda: incident(engine).acknowledged_at, what="acknowledged milestone")
        with db.transaction(engine) as s:
            acks = [
                e for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "page.acknowledged"
            ]
        assert len(acks) == 1 and acks[0].summary.startswith("Bob Okafor acknowledged")
        wait_for(
            lambda: "validators: acknowledged by Bob Okafor" in slack.transcript(ch),
            what="the header showing the acknowledgement",
        )

        pd.escalate(page.external_id)  # the policy's timer firing
        pd.reassign(page.external_id, to=["dave"], by="bob")
        assert pd.wait_for_webhooks()
        kinds = wait_for(
            lambda: (
                (k := [e for e in timeline_kinds(engine) if e.startswith("page.")])
                and "page.reassigned" in k
                and k
            ),
            what="escalation and reassignment on the timeline",
        )
        assert kinds.count("page.escalated") == 1 and kinds.count("page.reassigned") == 1

        say(slack, "resolve Rotated the signer; attestations back", channel=ch)
        wait_for(
            lambda: pd.incident(page.external_id)["status"] == "resolved",
            what="the PagerDuty incident resolved",
        )


def test_manual_page_is_not_repeated(engine):
    with paging_bot(engine) as (_bot, slack, pd):
        say(slack, "declare sev3 Indexer lagging 200 blocks")
        ch = channel_of(engine)
        settled(engine)
        assert pages(engine) == []  # SEV3 does not page
        assert (
            "is paging *indexer* on-call"
            in say(slack, "page indexer lag growing", channel=ch)["text"]
        )
        assert "already paged" in say(slack, "page indexer", channel=ch)["text"]
        settled(engine)
        assert len(pd_incidents(pd, "incidentbot-INC-1-indexer")) == 1
        oncall = say(slack, "oncall rpc", channel=ch)["text"]
        assert "*rpc*: now " in oncall and "; next " in oncall


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "ratelimited", "count": 2},
        {"kind": "server_error", "status": 500, "count": 2},
        {"kind": "timeout", "hold_s": 4.0, "applied": True, "count": 1},
    ],
    ids=["429-then-recovery", "500-then-recovery", "answer-lost"],
)
def test_pagerduty_failures_are_retried_without_a_second_page(engine, fault):
    with paging_bot(engine) as (_bot, slack, pd):
        armed = pd.fail_next("POST /incidents", **fault)
        say(slack, "declare sev2 RPC p99 latency above 2s")
        page = wait_for(
            lambda: [p for p in pages(engine) if p.status == "triggered"],
            timeout=40,
            what="the page after retries",
        )[0]
        assert armed.remaining == 0
        assert len(pd_incidents(pd, page.key)) == 1


def test_bad_webhook_signature_records_nothing(engine):
    with paging_bot(engine) as (_bot, slack, pd):
        say(slack, "declare sev1 RPC down")
        page = wait_for(lambda: [p for p in pages(engine) if p.status == "triggered"])[0]
        channel_of(engine)
        settled(engine)
        before = count(engine, "timeline_event")
        sent = pd.send_webhook(
            page.external_id, "incident.acknowledged", by="bob", secret="not-the-secret"
        )
        assert [d.status for d in sent] == [401]
        base = slack.driver.bot_url.removesuffix("/slack/events")
        assert httpx.post(f"{base}/webhooks/pagerduty", content=b"{}").status_code == 401
        assert count(engine, "timeline_event") == before
        assert incident(engine).acknowledged_at is None


def test_an_invalid_from_fails_the_page_clearly_with_the_fallback(engine):
    with paging_bot(engine, from_email="nobody@nodeworks.example") as (_bot, slack, pd):
        say(slack, "declare sev1 RPC down on every endpoint")
        ch = channel_of(engine)
        # The failure is reported just after the run's last commit.
        wait_for(lambda: [p.status for p in pages(engine)] == ["failed"], what="the failed page")
        assert pd.incidents() == []
        with db.transaction(engine) as s:
            events = svc.timeline(s, svc.get(s, "INC-1"))
        failed = [e for e in events if e.kind == "page.failed"]
        assert len(failed) == 1 and "Requester User Not Found" in failed[0].summary
        text = wait_for(
            lambda: (
                (t := slack.transcript(ch) + slack.transcript("incidents"))
                and "Paging *rpc* in PagerDuty failed" in t
                and t
            ),
            what="the fallback announcement",
        )
        assert "Requester User Not Found" in text and "subteam^S0ONCALLRPC" in text


def test_a_service_with_a_routing_key_is_paged_through_the_events_api(engine):
    with paging_bot(engine, routed=("indexer",)) as (_bot, slack, pd):
        say(slack, "declare sev3 Indexer stopped at block 21000000")
        ch = channel_of(engine)
        say(slack, "page indexer stuck since 04:10", channel=ch)
        page = wait_for(lambda: [p for p in pages(engine) if p.status == "triggered"])[0]
        assert page.number is not None
        assert len(pd_incidents(pd, page.key)) == 1
        assert pd.requests("POST /incidents") == []  # not through the REST API
        assert [r for r in pd.requests() if r.api == "events" and "enqueue" in r.path]
        say(slack, "resolve Restarted the indexer", channel=ch)
        wait_for(
            lambda: pd.incident(page.external_id)["status"] == "resolved",
            what="the PagerDuty incident resolved",
        )


def test_a_closed_incident_pages_nobody_until_reopened(engine):
    with paging_bot(engine) as (_bot, slack, pd):
        say(slack, "declare sev3 Indexer lagging 200 blocks")
        ch = channel_of(engine)
        for step in ("resolve indexer caught up", "close"):
            assert "INC-1" in say(slack, step, channel=ch)["text"]
        settled(engine)
        refused = say(slack, "page indexer still lagging?", channel=ch)["text"]
        assert "INC-1 is closed: cannot page on-call; reopen it first" in refused
        settled(engine)
        assert pages(engine) == []
        assert pd_incidents(pd) == []
        assert "page.requested" not in timeline_kinds(engine)
        assert "reopened" in say(slack, "reopen", channel=ch)["text"]
        assert "is paging *indexer* on-call" in say(slack, "page indexer", channel=ch)["text"]
        settled(engine)
        assert len(pd_incidents(pd, "incidentbot-INC-1-indexer")) == 1
