"""Start-up: the bot says it is ready only once it has warmed up, and the first command after
that is answered without paying for the start-up (Bolt's ``auth.test``, the pool's
connections, the web stack's first request were paid before)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func
from sqlmodel import select

from incidentbot import db
from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident
from incidentbot.ledger.models import Run
from incidentbot.runbooks import yaml_lines
from incidentbot.sandbox.slack.server import SlackSandbox
from tests.runbook_procs import BotProcess


@pytest.fixture
def slack():
    sandbox = SlackSandbox().start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_healthz_waits_for_the_warm_up_and_the_first_command_is_answered(engine, slack, caplog):
    settings = Settings(
        slack_bot_token=slack.bot_token,
        slack_signing_secret=slack.signing_secret,
        slack={"api_url": slack.base_url},
        workers=2,
    )
    bot = Bot.build(settings, engine, poll=0.1)
    entered, gate = threading.Event(), threading.Event()

    def broken() -> None:
        raise RuntimeError("this step cannot warm anything")

    def held() -> None:
        entered.set()
        assert gate.wait(60), "the test never opened the gate"

    bot.extra_warm_up.extend([("broken", broken), ("held", held)])
    started: list[str] = []
    starter = threading.Thread(target=lambda: started.append(bot.start_http()), daemon=True)
    caplog.set_level(logging.WARNING, logger="incidentbot.web.warmup")
    try:
        starter.start()
        assert entered.wait(60), "the warm-up never reached the held step"
        base = bot.url
        assert base is not None
        # Listening, warming up: not ready, and saying so.
        health = httpx.get(f"{base}/healthz", timeout=30)
        assert (health.status_code, health.json()) == (503, {"ok": False, "ready": False})
        # What the first command would have paid is paid already: Bolt knows who it is, and
        # the pool holds open connections for the workers and the first requests.
        assert len(slack.requests("auth.test")) == 1
        assert engine.pool.checkedin() >= min(settings.workers + 2, engine.pool.size())
        # The declare rehearsed on SQLite left nothing behind: no incident, no queued run.
        with db.read(engine) as s:
            assert s.exec(select(func.count()).select_from(Incident)).one() == 0
            assert s.exec(select(func.count()).select_from(Run)).one() == 0
        gate.set()
        starter.join(60)
        assert started == [base]
        health = httpx.get(f"{base}/healthz", timeout=30)
        assert health.status_code == 200
        assert health.json()["ready"] is True and health.json()["database"] == "ok"
        # A step that failed is logged; it does not keep the bot from being ready.
        assert "warm-up step broken failed" in caplog.text

        slack.driver.bot_url = f"{base}/slack/events"
        bot.start_workers()
        ack = slack.driver.slash_command("declare sev2 RPC p99 above 2s", user="alice")
        assert ack.status == 200, (ack.status, ack.error)
        assert "INC-1" in json.loads(ack.body)["text"]
        assert len(slack.requests("auth.test")) == 1  # the command did not ask Slack again
    finally:
        gate.set()
        starter.join(60)
        bot.stop()


def test_serve_says_it_listens_once_ready_and_answers_the_first_declare(
    sqlite_template: Path, slack, tmp_path: Path
):
    # One back end is enough here: what serve does in which order does not depend on it (the
    # warm-up itself runs on both above), and a process start is the costly part.
    database = tmp_path / "serve.db"
    shutil.copyfile(sqlite_template, database)
    proc = BotProcess(f"sqlite:///{database}", tmp_path / "serve.log", slack=slack, runbook_dirs=[])
    try:
        proc.wait_listening()
        assert proc.url is not None
        health = httpx.get(f"{proc.url}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["ready"] is True, health.text
        slack.driver.bot_url = proc.events_url
        ack = slack.driver.slash_command("declare sev1 Validators missing attestations")
        assert ack.status == 200, (ack.status, ack.error, proc.log())
        assert "INC-1" in json.loads(ack.body)["text"]
    finally:
        proc.kill()


def test_the_shipped_runbooks_read_by_libyaml_are_what_pyyaml_reads():
    """Start-up reads runbooks with libyaml; the data, every key's line and the duplicate keys
    must be exactly what PyYAML's own parser (whose errors users see) finds."""
    assert yaml_lines._FAST is not None, "PyYAML was built without libyaml"
    files = sorted((Path(__file__).resolve().parents[1] / "runbooks").glob("*.yaml"))
    assert len(files) >= 6
    doubled = "name: a\nsteps: []\nname: b\n"
    for text in [f.read_text(encoding="utf-8") for f in files] + [doubled]:
        assert yaml_lines._parse(yaml_lines._FAST, text) == yaml_lines._parse(yaml.SafeLoader, text)
    assert yaml_lines.parse_yaml(doubled)[2] == [(("name",), 3, 1)]
