"""The command line as a user runs it: a walk-through, and refusals that change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from incidentbot import db
from incidentbot.cli import lazy, main
from incidentbot.incidents import service as svc
from tests.conftest import count


def test_walkthrough_of_an_incident(cli, database_url):
    code, out, _ = cli("incident", "declare", "RPC p99 latency above 2s on mainnet", "--sev", "2",
                       "-f", "chain=ethereum", "--impact-started", "20m ago")  # fmt: skip
    assert code == 0
    assert "Declared INC-1 (SEV2): RPC p99 latency above 2s on mainnet" in out
    steps = [
        (("incident", "sev", "INC-1", "1", "--as", "bob"), "INC-1: severity is now SEV1"),
        (("incident", "status", "INC-1", "investigating"), "INC-1: status is now investigating"),
        (("incident", "assign", "INC-1", "comms lead", "carol"), "INC-1: carol is comms_lead"),
        (("incident", "note", "INC-1", "geth", "on", "rpc-2", "is", "behind"), "note added"),
        (("incident", "resolve", "INC-1", "failed", "over", "to", "rpc-3"), "INC-1: resolved"),
        (("incident", "close", "INC-1"), "INC-1: closed"),
    ]
    for argv, expected in steps:
        code, out, err = cli(*argv)
        assert (code, err) == (0, ""), argv
        assert expected in out

    code, out, _ = cli("timeline", "INC-1")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]
    expected_rows = [
        ("alice", "incident.declared", "Declared INC-1 (SEV2)"),
        ("alice", "milestone.set", "Impact started at"),
        ("alice", "role.assigned", "alice is commander"),
        ("bob", "severity.changed", "Raised severity SEV2 → SEV1"),
        ("alice", "status.changed", "Status triage → investigating"),
        ("alice", "role.assigned", "carol is comms_lead"),
        ("alice", "note", "geth on rpc-2 is behind"),
        ("alice", "incident.resolved", "Resolved: failed over to rpc-3"),
        ("alice", "incident.closed", "Closed"),
    ]
    assert len(rows) == len(expected_rows)
    for row, (who, kind, what) in zip(rows, expected_rows, strict=True):
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert cells[0].startswith("20")  # a date in every row
        assert cells[1:3] == [who, kind]
        assert cells[3].startswith(what)

    code, out, _ = cli("incident", "show", "INC-1")
    assert "Severity: SEV1   Status: closed" in out and "comms_lead=carol" in out
    code, out, _ = cli("incident", "list")
    assert out.strip() == "No open incidents."
    code, out, _ = cli("incident", "list", "--all")
    assert "INC-1" in out and "closed" in out


INVALID = [
    (("incident", "declare"), 2, "Missing argument 'title'"),
    (("incident", "declare", "x", "--sev", "9"),
     1, "unknown severity '9': allowed are SEV1, SEV2, SEV3, SEV4"),
    (("incident", "declare", "   "), 1, "the title is empty"),
    (("incident", "declare", "x", "--field", "chain"), 1, "--field 'chain': use name=value"),
    (("incident", "declare", "x", "-f", "planet=mars"),
     1, "unknown field 'planet': allowed are chain, network, client, component"),
    (("incident", "declare", "x", "--impact-started", "tomorrow"), 1, "invalid time 'tomorrow'"),
    (("incident", "declare", "x", "--detected", "2099-01-01T00:00Z"), 1, "is in the future"),
    (("incident", "declare", "x", "--as", " "), 1, "--as is empty: name who is acting"),
    (("incident", "sev", "INC-1", "SEV0"), 1, "unknown severity 'SEV0'"),
    (("incident", "sev", "INC-99", "1"), 1, "no incident INC-99"),
    (("incident", "sev", "banana", "1"), 1, "'banana' is not an incident reference"),
    (("incident", "sev", "INC-1", "2"), 1, "INC-1 is already SEV2"),
    (("incident", "status", "INC-1", "done"),
     1, "unknown status 'done': allowed are triage, investigating, identified, monitoring"),
    (("incident", "status", "INC-1", "resolved"), 1, "resolving needs a summary"),
    (("incident", "assign", "INC-1", "janitor", "bob"), 1, "unknown role 'janitor'"),
    (("incident", "assign", "INC-1", "commander"), 2, "Missing argument 'user'"),
    (("incident", "unassign", "INC-1", "commander"), 1, "an incident always has a commander"),
    (("incident", "note", "INC-1"), 2, "Missing argument 'text'"),
    (("incident", "resolve", "INC-1", " "), 1, "resolving needs a summary"),
    (("incident", "close", "INC-1"), 1, "INC-1 is triage: resolve it before closing"),
    (("incident", "reopen", "INC-1"), 1, "INC-1 is triage, not resolved or closed"),
    (("incident", "milestone", "INC-1", "lunch", "now"), 1, "unknown milestone 'lunch'"),
    (("incident", "milestone", "INC-1", "detected", "soon"), 1, "invalid time 'soon'"),
    (("incident", "frobnicate"), 2, "No such command 'frobnicate'"),
    (("incident", "list", "--bogus"), 2, "No such option: --bogus"),
    (("timeline", "INC-7"), 1, "no incident INC-7"),
    (("--config", "missing.yaml", "incident", "list"), 1, "missing.yaml: file not found"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "message"), INVALID, ids=[" ".join(a) for a, *_ in INVALID]
)
def test_invalid_invocations_say_what_is_wrong_and_change_nothing(
    cli, database_url, argv, code, message
):
    assert cli("incident", "declare", "node down", "--sev", "2")[0] == 0
    engine = db.make_engine(database_url)
    before = (count(engine, "incident"), count(engine, "timeline_event"))

    got_code, out, err = cli(*argv)

    assert got_code == code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in out + err
    assert (count(engine, "incident"), count(engine, "timeline_event")) == before
    engine.dispose()


READ_ONLY = [
    ("incident", "list"),
    ("incident", "show", "INC-1"),
    ("timeline", "INC-1"),
    ("runs", "list"),
    ("alerts", "list"),
    ("actions", "list"),
    ("postmortem", "list"),
    ("jobs", "list"),
    ("db", "status"),
]


@pytest.mark.parametrize("argv", READ_ONLY, ids=[" ".join(a) for a in READ_ONLY])
def test_a_read_only_command_on_a_missing_sqlite_file_creates_nothing(
    tmp_path, monkeypatch, capsys, argv
):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "not" / "here" / "incidentbot.db"
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", f"sqlite:///{missing}")
    assert main(list(argv)) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: the database {missing} does not exist: run `incidentbot db upgrade` to create it\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_run_on_a_database_without_schema(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fresh.db").touch()
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", f"sqlite:///{tmp_path}/fresh.db")
    assert main(["incident", "list"]) == 1
    assert "has no incidentbot schema yet: run `incidentbot db upgrade`" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert "upgraded from empty to" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "already at revision" in capsys.readouterr().out
    assert main(["incident", "list"]) == 0
    assert "No open incidents." in capsys.readouterr().out


def test_db_upgrade_creates_a_missing_sqlite_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "new.db"
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", f"sqlite:///{target}")
    assert main(["db", "upgrade"]) == 0
    assert f"upgraded from empty to {db.head_revision()}" in capsys.readouterr().out
    assert target.is_file()


def test_refuses_a_schema_from_an_unknown_newer_version(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/x.db"
    engine = db.make_engine(url)
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff9999'")
    engine.dispose()
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", url)
    assert main(["incident", "list"]) == 1
    assert "newer than this incidentbot" in capsys.readouterr().err


def test_unreachable_database_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", "postgresql+psycopg://u:pw@127.0.0.1:1/none")
    assert main(["incident", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use the database:") and len(err.splitlines()) == 1
    assert "pw" not in err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("incidentbot 0.")


def test_refuses_an_out_of_date_schema_and_names_the_command(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/old.db"
    engine = db.make_engine(url)
    db.upgrade(engine, "0001")
    engine.dispose()
    monkeypatch.setenv("INCIDENTBOT_DATABASE_URL", url)
    assert main(["incident", "list"]) == 1
    err = capsys.readouterr().err
    assert f"is at revision 0001, this incidentbot needs {db.head_revision()}" in err
    assert "run `incidentbot db upgrade`" in err
    assert main(["db", "upgrade"]) == 0
    assert f"upgraded from 0001 to {db.head_revision()}" in capsys.readouterr().out
    assert main(["incident", "list"]) == 0


COMMANDS = ["incident", "timeline", "db", "config", "runs", "alerts", "actions", "runbook", "lab",
            "postmortem", "handoff", "report", "worker", "jobs", "scheduler", "demo",
            "serve"]  # fmt: skip


def test_help_lists_every_command_and_each_one_loads(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    section = out.split("Commands:\n", 1)[1]
    listed = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
    assert listed == COMMANDS
    # Every module holding sub-commands is behind one of them (runbook_cmd through runbook_run,
    # incident_follow and incident_impact through incident).
    here = Path(lazy.__file__).parent
    modules = {p.stem for p in here.glob("*.py")} - {"__init__", "__main__", "common", "lazy",
                                                      "root", "runbook_cmd",
                                                      "incident_follow",
                                                      "incident_impact"}  # fmt: skip
    assert modules == {entry.module for entry in lazy.COMMANDS.values()}
    for name in COMMANDS:
        # The line --help shows without importing the command is the command's own help.
        assert lazy.load(name).get_short_help_str(1000) == lazy.COMMANDS[name].help, name
        assert main([name, "--help"]) == 0, name
        shown = capsys.readouterr().out
        assert shown.startswith(f"Usage: incidentbot {name} [OPTIONS]"), name
        assert "╭" not in shown, name  # plain help, like the root's, not Rich panels


HEAVY = {"slack_bolt", "slack_sdk", "sqlalchemy", "sqlmodel", "alembic", "kubernetes", "jinja2",
         "httpx", "pydantic", "rich", "pagerduty", "starlette"}  # fmt: skip


def imported(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """(stdout, top-level packages imported) of the CLI run with ``python -X importtime``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "incidentbot.cli", *argv],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc.stdout, names


@pytest.mark.parametrize("argv", [["--version"], ["--help"]], ids=lambda a: a[0])
def test_version_and_help_import_no_heavy_library(argv):
    out, names = imported(argv)
    assert out.startswith("incidentbot 0." if argv == ["--version"] else "Usage: incidentbot")
    assert names & HEAVY == set()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["incident", "list"], "No open incidents."), (["runs", "list"], "No runs."),
     (["jobs", "list"], "reminders.action_items")],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)  # fmt: skip
def test_a_database_command_does_not_import_alembic_slack_or_kubernetes(tmp_path, argv, expected):
    url = f"sqlite:///{tmp_path}/x.db"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    out, names = imported(argv, {"INCIDENTBOT_DATABASE_URL": url})
    assert expected in out
    assert "sqlalchemy" in names  # it did reach the database
    assert names & {"alembic", "slack_bolt", "slack_sdk", "kubernetes", "pagerduty"} == set()


def test_postmortem_render_refuses_an_out_path_whose_directory_is_missing(cli, tmp_path):
    assert cli("incident", "declare", "node down", "--sev", "2")[0] == 0
    target = tmp_path / "nonexistent" / "dir" / "x.html"
    code, out, err = cli("postmortem", "render", "INC-1", "--out", str(target))
    assert (code, out) == (1, "")
    assert err == (
        f"error: --out {target}: the directory {target.parent} does not exist: create it first\n"
    )
    assert not (tmp_path / "nonexistent").exists()
    code, out, err = cli("postmortem", "render", "INC-1", "--out", str(tmp_path))
    assert (code, out) == (1, "")
    assert err == f"error: --out {tmp_path}: is a directory: name the file to write\n"


def test_invisible_controls_typed_on_the_command_line_are_removed(cli, engine):
    """A right-to-left override, zero-width characters and a bell typed into a title or a note
    are removed before anything is stored; what is visible is kept as typed."""
    code, _, err = cli("incident", "declare", "geth on rpc\u200b-2 \u202estuck\u202c\x07")
    assert (code, err) == (0, ""), err
    assert cli("incident", "note", "INC-1", "peer\u2066 count\u2069 zero\ufeff")[0] == 0
    with db.transaction(engine) as s:
        inc = svc.get(s, "INC-1")
        summaries = [e.summary for e in svc.timeline(s, inc)]
    assert inc.title == "geth on rpc-2 stuck"
    assert "peer count zero" in summaries


def test_what_was_typed_is_printed_as_typed_never_as_terminal_markup(cli):
    title = "[/x] geth [bold]down[/bold] :fire:"
    code, out, err = cli("incident", "declare", title, "-f", "chain=[red]eth")
    assert (code, err) == (0, "")
    assert f"Declared INC-1 (SEV3): {title}" in out
    code, _, err = cli("incident", "note", "INC-1", "[/]", "see", "[red]here[/red]")
    assert (code, err) == (0, "")
    code, out, err = cli("incident", "show", "INC-1")
    assert (code, err) == (0, "")
    assert f"INC-1 {title}" in out and "chain=[red]eth" in out
    assert "🔥" not in out
    code, out, err = cli("incident", "list")
    assert (code, err) == (0, "")
    assert "[/x] geth [bold]down[/bold] :fire:" in out
    code, out, err = cli("timeline", "INC-1")
    assert (code, err) == (0, "")
    assert "[/] see [red]here[/red]" in out
    code, out, err = cli(
        "incident", "resolve", "INC-1", "[/]", "fixed", "--impact-started", "1m ago"
    )
    assert (code, err) == (0, "")
    code, out, _ = cli("incident", "show", "INC-1")
    assert "Resolution: [/] fixed" in out
