"""Configuration: defaults, the YAML file, env overrides, secrets, and `config check`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from incidentbot.cli import main
from incidentbot.config import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for key in ("INCIDENTBOT_CONFIG", "INCIDENTBOT_DATABASE_URL", "INCIDENTBOT_SECRETS_DIR"):
        monkeypatch.delenv(key, raising=False)


def test_defaults_are_a_complete_policy():
    s = load_settings()
    assert [x.name for x in s.severities] == ["SEV1", "SEV2", "SEV3", "SEV4"]
    assert [x.name for x in s.severities if x.page] == ["SEV1", "SEV2"]
    assert [x.name for x in s.severities if x.postmortem_required] == ["SEV1", "SEV2"]
    assert [x.name for x in s.statuses if x.terminal] == ["resolved", "closed"]
    assert [r.name for r in s.roles] == ["commander", "scribe", "comms_lead", "ops_lead"]
    assert [f.name for f in s.fields] == ["chain", "network", "client", "component"]
    assert s.channels.naming == "inc-{number}-{slug}" and s.channels.digest == "incidents"
    assert s.effective_database_url.startswith("sqlite:///") and "data/incidentbot.db" in (
        s.effective_database_url
    )


def test_yaml_overrides_defaults_and_env_overrides_yaml(tmp_path, monkeypatch):
    (tmp_path / "incidentbot.yaml").write_text(
        "timezone: Europe/Berlin\n"
        "default_severity: SEV4\n"
        "channels: {naming: 'sev-{severity}-{number}', digest: '#ops-incidents'}\n"
        "fields:\n  - {name: chain, label: Chain, allowed: [ethereum, gnosis], required: true}\n"
    )
    s = load_settings()
    assert s.timezone == "Europe/Berlin" and s.default_severity == "SEV4"
    assert s.channels.digest == "ops-incidents"
    assert s.fields[0].allowed == ["ethereum", "gnosis"]
    monkeypatch.setenv("INCIDENTBOT_TIMEZONE", "UTC")
    assert load_settings().timezone == "UTC"


def test_every_error_is_reported_with_its_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "severities:\n"
        "  - {name: SEV1, label: Critical, cadence: 15m}\n"
        "  - {name: SEV2, label: Major, cadence: soon}\n"
        "  - {name: SEV3, label: Minor, cadence: 0}\n"
        "  - {name: P4, label: Low, cadence: 1d}\n"
        "channels: {naming: 'Incident {number}', bogus: 1}\n"
        "timezone: Mars/Olympus\n"
        "slack_bot_token: xoxb-should-not-be-here\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    problems = err.value.problems
    expected_starts = [
        "slack_bot_token: secrets are not read from the config file",
        "severities[1].cadence: invalid duration 'soon'",
        "severities[2].cadence: must be longer than zero, e.g. 30m",
        "severities[3].name: 'P4' is not a severity name",
        "timezone: unknown time zone 'Mars/Olympus'",
        "channels.naming: 'Incident {number}' has characters Slack",
        "channels.bogus: unknown setting",
    ]
    assert len(problems) == len(expected_starts), problems
    for start in expected_starts:
        assert any(p.startswith(start) for p in problems), start
    assert "xoxb-should-not-be-here" not in str(err.value)


def test_cross_field_rules(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "default_severity: SEV7\n"
        "roles: [{name: scribe, label: Scribe, description: notes}]\n"
        "statuses:\n  - {name: triage, label: Triage}\n  - {name: resolved, label: Resolved}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = "\n".join(err.value.problems)
    assert "statuses: missing status 'investigating', which is required" in text
    assert "statuses[1].terminal: 'resolved' must be terminal" in text
    assert "default_severity: 'SEV7' is not a configured severity" in text
    assert "roles: missing role 'commander', which is required" in text


def test_yaml_syntax_error_gives_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("timezone: UTC\nseverities: [\n  - oops: {\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.problems[0].startswith("line ")
    assert "not valid YAML" in err.value.problems[0]


def test_secrets_from_env_and_secrets_dir_never_print(tmp_path, monkeypatch, capsys):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "incidentbot_slack_signing_secret").write_text("s3cr3t-from-file")
    monkeypatch.setenv("INCIDENTBOT_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("INCIDENTBOT_SLACK_BOT_TOKEN", "xoxb-123-from-env")
    s = load_settings()
    assert s.slack_bot_token.get_secret_value() == "xoxb-123-from-env"
    assert s.slack_signing_secret.get_secret_value() == "s3cr3t-from-file"
    assert "xoxb" not in repr(s) and "s3cr3t" not in str(s)
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "slack_bot_token: (set)" in out and "slack_app_token: (unset)" in out
    assert "xoxb-123" not in out and "s3cr3t" not in out


def test_config_check_command(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("timezone: Europe/Berlin\n")
    assert main(["config", "check", str(good)]) == 0
    assert "ok (4 severities, 6 statuses, 4 roles, 4 fields)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("severities:\n  - {name: SEV1, label: x, cadence: abc}\n  - {name: SEV2}\n")
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: {bad}: severities[0].cadence: invalid duration 'abc': "
        "use a number with a unit, e.g. 30m, 1h, 2d",
        f"error: {bad}: severities[1].label: is required",
        f"error: {bad}: severities[1].cadence: is required",
    ]


def test_settings_object_is_immutable():
    s = Settings()
    with pytest.raises(Exception, match="frozen"):
        s.timezone = "UTC"


# -- URLs ---------------------------------------------------------------------------------------

PD_HTTP = (
    "pagerduty.api_url: http://pd.example.com must use https://: the PagerDuty client accepts "
    "only https (the local PagerDuty server serves https: set pagerduty.ca_file to its CA)"
)


def _paging_config(tmp_path, api_url):
    path = tmp_path / "incidentbot.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "pagerduty:\n"
        f"  api_url: {api_url}\n"
        "  from_email: bot@nodeworks.example\n"
        "  services: {rpc: {service_id: PRPC001}}\n"
    )
    return path


def test_config_check_refuses_an_http_pagerduty_url(tmp_path, capsys):
    path = _paging_config(tmp_path, "http://pd.example.com")
    assert main(["config", "check", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"error: {path}: {PD_HTTP}"]
    # The same file with https is fine.
    path = _paging_config(tmp_path, "https://pd.example.com")
    assert main(["config", "check", str(path)]) == 0


def test_serve_refuses_an_http_pagerduty_url_without_a_traceback(tmp_path):
    """``serve`` used to start, build the PagerDuty client and die in it with a traceback."""
    path = _paging_config(tmp_path, "http://pd.example.com")
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "INCIDENTBOT_SLACK_BOT_TOKEN": "xoxb-1-local",
        "INCIDENTBOT_SLACK_SIGNING_SECRET": "local-signing-secret",
        "INCIDENTBOT_PAGERDUTY_API_TOKEN": "local-pd-token",
        "INCIDENTBOT_HTTP__PORT": "0",
    }
    for name in ("INCIDENTBOT_CONFIG", "INCIDENTBOT_DATABASE_URL", "INCIDENTBOT_SECRETS_DIR"):
        env.pop(name, None)
    assert main(["-c", str(path), "db", "upgrade"]) == 1  # refused too: nothing is created
    assert not (tmp_path / "data").exists()
    done = subprocess.run(
        [sys.executable, "-m", "incidentbot.cli", "-c", str(path), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"error: {path}: {PD_HTTP}"]
    assert "Traceback" not in done.stdout


def test_vendor_urls_need_https_except_on_this_machine(tmp_path):
    ok = {
        "slack": {"api_url": "http://127.0.0.1:3000/api/"},
        "pagerduty": {
            "api_url": "https://127.0.0.1:8443",
            "events_url": "https://events.eu.pagerduty.com",
        },
        "action_items": {"github_api_url": "http://[::1]:8080"},
        "http": {"public_url": "http://127.0.0.1:8080"},
        "database_url": "postgresql+psycopg://incidentbot@db.internal/incidentbot",
    }
    Settings(**ok)
    Settings(slack={"api_url": "http://localhost:3000/api/"})
    with pytest.raises(ValidationError) as err:
        Settings(
            slack={"api_url": "http://slack.example.com/api/"},
            pagerduty={"events_url": "http://127.0.0.1:8443"},
            action_items={"github_api_url": "http://github.example.com"},
            http={"public_url": "http://incidentbot.example.com"},
            database_url="mysql://root:hunter2@db/incidentbot",
        )
    text = str(err.value)
    for expected in (
        "slack.api_url: http://slack.example.com must use https://: plain http would send the "
        "bot's Slack token in clear (http is accepted only for this machine: localhost, "
        "127.0.0.1, ::1)",
        "pagerduty.events_url: http://127.0.0.1:8443 must use https://: the PagerDuty client "
        "accepts only https",
        "action_items.github_api_url: http://github.example.com must use https://: plain "
        "http would send the bot's GitHub token in clear",
        "http.public_url: http://incidentbot.example.com must use https://: the signed run "
        "links would travel in clear",
        "database_url: mysql:// is not a supported database (supported: sqlite, postgresql)",
    ):
        assert expected in text
    assert "hunter2" not in text


def test_url_messages_never_repeat_a_secret(tmp_path, capsys):
    path = tmp_path / "leaky.yaml"
    path.write_text(
        "pagerduty: {api_url: 'http://ops:pd-pa55word@pd.example.com:8080/?token=k3y-abc'}\n"
        "database_url: not a url with pa55word\n"
    )
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"error: {path}: pagerduty.api_url: http://pd.example.com:8080 must use https://" in err
    assert f"error: {path}: database_url: is not a database URL: write sqlite:///" in err
    assert "pa55word" not in err and "k3y-abc" not in err
