"""One incident, two doors: run entirely from the CLI, then entirely from Slack, the end states
match (channel, topic, header, pins, digest, invitations, pages, timeline).

Both runs go against the local Slack and PagerDuty servers over real sockets, each with a
running bot whose workers carry out the durable effects; the CLI runs in-process on the same
database, as an operator's terminal would next to ``incidentbot serve``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.paging.flows import pages_of
from tests.slack_harness import settled
from tests.test_paging_e2e import paging_bot

TITLE = "RPC p99 latency above 2s on mainnet"


def steps(ref: str, bob: str) -> list[tuple[str, list[str]]]:
    """Each operation as typed in Slack (in the incident's channel but the first) and in a
    terminal."""
    return [
        (f"declare sev1 {TITLE}", ["declare", "--sev", "1", "--wait", "--timeout", "30", TITLE]),
        ("sev 2", ["sev", ref, "2"]),
        ("status investigating", ["status", ref, "investigating"]),
        (f"assign scribe <@{bob}|bob>", ["assign", ref, "scribe", bob]),
        ("note geth on rpc-2 is behind", ["note", ref, "geth on rpc-2 is behind"]),
        ("update Failing over to rpc-3", ["update", ref, "Failing over to rpc-3"]),
        ("milestone impact-started 20m ago", ["milestone", ref, "impact-started", "20m ago"]),
        ("page validators attestations", ["page", ref, "validators", "-m", "attestations"]),
        ("resolve failed over to rpc-3", ["resolve", ref, "failed over to rpc-3"]),
        ("close", ["close", ref]),
    ]  # fmt: skip


def norm(value: Any) -> Any:
    """Ids, numbers and times differ between two runs; what people read otherwise does not."""
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, tuple):
        return tuple(norm(v) for v in value)
    if not isinstance(value, str):
        return value
    text = re.sub(r"incidentbot [0-9a-f]{8}\b", "incidentbot INSTALLATION", value)  # per database
    text = re.sub(r"https?://127\.0\.0\.1:\d+", "SANDBOX", text)  # each run's own server
    text = re.sub(r"\bINC-\d+", "INC-N", text)
    text = re.sub(r"\binc-\d+", "inc-n", text)
    text = re.sub(r"\b[CUWP][A-Z0-9]{6,}\b", "ID", text)
    text = re.sub(r"#\d+", "#N", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2}", "DATE", text)
    text = re.sub(r"\d{1,2}:\d{2}(:\d{2})?", "TIME", text)
    return re.sub(r"\b\d+(\.\d+)?\s?(s|m|h|d|min|sec|seconds|minutes)\b", "DUR", text)


def end_state(engine: Any, bot: Any, slack: Any, pd: Any, ref: str) -> dict[str, Any]:
    settled(engine)
    # PagerDuty tells the bot of each resolved page by webhook; the header follows.
    assert pd.wait_for_webhooks()
    settled(engine)
    with db.transaction(engine) as s:
        inc = svc.get(s, ref)
        kinds = [e.kind for e in svc.timeline(s, inc)]
        pages = sorted((p.service, p.status) for p in pages_of(s, inc))
    assert inc.channel_id and inc.header_ts and inc.digest_ts
    channel = slack.snapshot(inc.channel_id)
    digest = slack.snapshot(bot.settings.channels.digest)
    header = next(m for m in channel.messages if m.ts == inc.header_ts)
    announcement = next(m for m in digest.messages if m.ts == inc.digest_ts)
    updates = [m.text for m in channel.messages if "Failing over to rpc-3" in m.text]
    return norm(
        {
            "channel": channel.name,
            "topic": channel.topic,
            "purpose": channel.purpose,
            "members": sorted(channel.members),
            "header": header.text,
            "pins": [m.text for m in channel.pinned],
            "digest": announcement.text,
            "updates": updates,
            "updates_in_digest": [m.text for m in digest.messages if "Failing over" in m.text],
            "pages": pages,
            "pagerduty": sorted(
                (i["service"]["summary"], i["status"], i["incident_key"]) for i in pd.incidents()
            ),
            "timeline": sorted(Counter(kinds).items()),
            "status": inc.status,
        }
    )


@pytest.fixture
def other_engine(engine: Engine, request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """A second fresh database on the same back end: each run starts from nothing (and the
    sandboxes' deterministic PagerDuty ids cannot meet the other run's pages)."""
    if engine.dialect.name == "sqlite":
        target = tmp_path / "other.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        url = f"sqlite:///{target}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        name = f"parity_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        cluster.execute(f"CREATE DATABASE {name} TEMPLATE {request.getfixturevalue('pg_template')}")
        url = cluster.url(name)
    other = db.make_engine(url)
    try:
        yield other
    finally:
        other.dispose()


def ids(slack: Any) -> tuple[str, str]:
    users = {u["name"]: u["id"] for u in slack.describe()["users"]}
    return users["alice"], users["bob"]


def test_the_cli_and_slack_run_the_same_incident_to_the_same_end_state(
    engine, other_engine, cli, tmp_path, monkeypatch
):
    # From the CLI, with the bot running against the same database and Slack configured.
    with paging_bot(engine) as (bot, slack, pd):
        alice, bob = ids(slack)
        config = tmp_path / "cli.yml"
        config.write_text(json.dumps({"pagerduty": bot.settings.pagerduty.model_dump(mode="json")}))
        monkeypatch.setenv("INCIDENTBOT_CONFIG", str(config))
        monkeypatch.setenv("INCIDENTBOT_SLACK_BOT_TOKEN", slack.bot_token)
        monkeypatch.setenv("INCIDENTBOT_ACTOR", alice)
        for i, (_typed, argv) in enumerate(steps("INC-1", bob)):
            code, out, err = cli("incident", *argv)
            assert code == 0, (argv, out, err)
            if i == 0:
                assert "Paging rpc on-call." in out
                assert re.search(r"Channel: #inc-1-", out), out
                assert "Page #1: rpc on-call, triggered" in out
            settled(engine)  # each change's effects done before the next, as a person waits
        from_cli = end_state(engine, bot, slack, pd, "INC-1")

    # From Slack, on a database of its own, against fresh servers.
    engine = other_engine
    with paging_bot(engine) as (bot, slack, pd):
        alice, bob = ids(slack)
        channel = "incidents"
        for i, (typed, _argv) in enumerate(steps("INC-1", bob)):
            ack = slack.driver.slash_command(typed, user="alice", channel=channel)
            assert ack.status == 200, ack.body
            assert "Usage" not in json.loads(ack.body)["text"], (typed, ack.body)
            settled(engine)
            if i == 0:
                with db.transaction(engine) as s:
                    channel = svc.get(s, "INC-1").channel_name
        from_slack = end_state(engine, bot, slack, pd, "INC-1")

    for key in from_cli:
        assert from_cli[key] == from_slack[key], (key, from_cli[key], from_slack[key])
    # What the two runs share is the whole incident, not an empty one.
    assert from_cli["status"] == "closed"
    assert from_cli["pages"] == [("rpc", "resolved"), ("validators", "resolved")]
    kinds = dict(from_cli["timeline"])
    for kind in ("incident.declared", "status.update", "milestone.set", "incident.closed"):
        assert kinds.get(kind) == 1, kind
    assert len(from_cli["members"]) >= 2 and len(from_cli["updates_in_digest"]) == 1
