"""``incidentbot worker`` carries out the effects the use cases queue, as ``serve`` does: a CLI
declare with Slack configured gets its channel, header and announcement from a worker process
alone (no ``serve`` running)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from incidentbot import db
from incidentbot.incidents import service as svc

REPO = Path(__file__).resolve().parents[1]


def test_a_worker_alone_creates_the_channel_of_a_cli_declare(
    cli, database_url, slack_sandbox, tmp_path, monkeypatch
):
    config = tmp_path / "incidentbot.json"
    config.write_text(json.dumps({"slack": {"api_url": slack_sandbox.base_url}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
    env.update(
        INCIDENTBOT_DATABASE_URL=database_url,
        INCIDENTBOT_CONFIG=str(config),
        INCIDENTBOT_SLACK_BOT_TOKEN=slack_sandbox.bot_token,
        PYTHONPATH=str(REPO),
    )
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "incidentbot.cli", "worker", "--threads", "2", "--poll", "0.05"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        monkeypatch.setenv("INCIDENTBOT_CONFIG", str(config))
        monkeypatch.setenv("INCIDENTBOT_SLACK_BOT_TOKEN", slack_sandbox.bot_token)
        code, out, err = cli(
            "incident", "declare", "--sev", "2", "--wait", "--timeout", "120", "RPC", "down"
        )
        assert code == 0, (out, err, (tmp_path / "worker.log").read_text())
        found = re.search(r"Channel: #(inc-1-[a-z0-9-]+)", out)
        assert found, out
        channel = slack_sandbox.workspace.channel_by_name(found.group(1))
        assert channel is not None
        posted = slack_sandbox.requests("chat.postMessage")
        assert any(c.args.get("channel") == channel.id for c in posted)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        log.close()
    engine = db.make_engine(database_url)
    try:
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            kinds = {e.kind for e in svc.timeline(s, inc)}
    finally:
        engine.dispose()
    assert inc.channel_id == channel.id and inc.header_ts and inc.digest_ts
    assert {"channel.created", "header.posted", "digest.announced"} <= kinds
    assert "runbook steps only" not in (tmp_path / "worker.log").read_text()
