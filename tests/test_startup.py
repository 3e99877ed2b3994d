"""Start-up: the bot says it is ready only once it has warmed up, and the first command after
that is answered without paying for the start-up (Bolt's ``auth.test``, the pool's
connections, the web stack's first request were paid before)."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func
from sqlmodel import select

from incidentbot import db
from incidentbot.bot import Bot
from incidentbot.cli import _command, main
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident
from incidentbot.ledger.models import Run
from incidentbot.runbooks import yaml_lines
from incidentbot.runbooks.actions import Action, ActionRegistry
from incidentbot.runbooks.check_cache import FILE_NAME, digest
from incidentbot.sandbox.slack.server import SlackSandbox
from tests.ledger_harness import REPO
from tests.runbook_procs import BotProcess

SHIPPED = Path(__file__).resolve().parents[1] / "runbooks"


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
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    shutil.copyfile(SHIPPED / "announce.yaml", runbooks / "announce.yaml")
    (runbooks / "bad.yaml").write_text("name: bad\nsteps: []\nsteps: []\n", encoding="utf-8")
    proc = BotProcess(
        f"sqlite:///{database}", tmp_path / "serve.log", slack=slack, runbook_dirs=[runbooks]
    )
    try:
        proc.wait_listening()
        assert proc.url is not None
        health = httpx.get(f"{proc.url}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["ready"] is True, health.text
        # Slack was asked who the bot is during the warm-up, and said so.
        assert "Slack: ok" in proc.log()
        assert len(slack.requests("auth.test")) == 2  # the Slack adapter's and Bolt's
        # The bad runbook is reported; the good one was kept as checked, in the data directory
        # (relative to the working directory by default).
        assert (
            f"runbook not loaded: {runbooks / 'bad.yaml'}:3: steps: duplicate key 'steps'"
            in proc.log()
        )
        kept = json.loads((tmp_path / "data" / FILE_NAME).read_text(encoding="utf-8"))
        assert kept["passed"] == [digest((runbooks / "announce.yaml").read_text(encoding="utf-8"))]
        slack.driver.bot_url = proc.events_url
        ack = slack.driver.slash_command("declare sev1 Validators missing attestations")
        assert ack.status == 200, (ack.status, ack.error, proc.log())
        assert "INC-1" in json.loads(ack.body)["text"]
        assert len(slack.requests("auth.test")) == 2  # the command did not ask Slack again
    finally:
        proc.kill()


def test_serve_does_not_import_what_its_first_requests_do_not_need():
    """The built-in runbook actions (and the HTTP client they use) wait for a runbook to be
    checked, planned or run; Socket Mode's client, PagerDuty's and the migrations, for being
    configured or asked for; Rich, for a command that prints tables."""
    code = (
        "import sys, json, incidentbot.cli.serve_cmd, incidentbot.bot; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    loaded = set(json.loads(out.stdout))
    assert "incidentbot.bot" in loaded and "sqlalchemy" in loaded
    for name in (
        "incidentbot.runbooks.actions.builtin",
        "incidentbot.runbooks.actions.web3",
        "httpx",
        "slack_sdk.socket_mode",
        "incidentbot.pagerduty_adapter",
        "alembic",
        "rich",
    ):
        assert name not in loaded, name


def test_the_built_in_actions_are_loaded_on_first_use_once():
    loads: list[str] = []

    def builtins() -> list[type[Action]]:
        loads.append("loaded")
        if len(loads) == 1:
            raise ImportError("a module of an action is broken")
        return [Probe]

    class Probe(Action):
        name = "lab.probe"

    class Other(Action):
        name = "lab.probe"

    registry = ActionRegistry(later=builtins)
    assert registry.registered_here() == [] and loads == []
    with pytest.raises(ImportError):
        registry.get("lab.probe")
    assert isinstance(registry.get("lab.probe"), Probe)  # tried again, loaded
    assert registry.names() == ["lab.probe"] and "lab.probe" in registry and len(registry) == 1
    assert loads == ["loaded", "loaded"] and registry.registered_here() is None
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Other)
    # Registering first loads them too: a taken name is refused as it always was.
    taken = ActionRegistry(later=lambda: [Probe])
    with pytest.raises(ValueError, match="already registered"):
        taken.register(Other)


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


def test_serve_that_cannot_start_leaves_the_collector_on(tmp_path, monkeypatch, capsys):
    """``serve`` turns the collector off while it imports and starts; a refusal turns it back
    on (the command line runs in-process in tests and tools)."""
    for name in [k for k in os.environ if k.startswith("INCIDENTBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INCIDENTBOT_DATA_DIR", str(tmp_path / "data"))
    assert _command(["--config", "serve.yaml", "serve"]) == "serve"
    assert _command(["-c", "serve", "db", "upgrade"]) == "db"
    assert gc.isenabled()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert main(["serve"]) == 1
    finally:  # serve set up logging to this test's captured stderr: put back what was there
        root.handlers[:] = handlers
        root.setLevel(level)
    assert gc.isenabled()
    assert capsys.readouterr().err.startswith("error: ")


def test_a_slack_request_leaves_the_bots_own_log_levels_alone(engine):
    """Bolt sets the level of the logger named after its app from the root logger's at each
    request: named like the bot's package, every module's log level followed (an alert's
    declare logged at INFO went missing once a request had come while the root logger was at
    WARNING)."""
    from tests.slack_harness import running_bot

    root = logging.getLogger()
    level = root.level
    package = logging.getLogger("incidentbot")
    before = package.level
    try:
        with running_bot(engine) as (_, slack):
            root.setLevel(logging.ERROR)
            ack = slack.driver.slash_command("help", user="alice")
            assert ack.status == 200, (ack.status, ack.error)
        root.setLevel(logging.DEBUG)
        assert package.level == before
        assert logging.getLogger("incidentbot.alerts.declare").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(level)
