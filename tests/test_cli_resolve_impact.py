"""``incidentbot incident resolve`` asks when the impact started, as the Slack resolve does."""

from __future__ import annotations

import io
import sys

import pytest

from incidentbot import db
from incidentbot.incidents import service as svc


def _declared(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("incident", "declare", "Validator missed attestations", "--sev", "2")
    assert code == 0 and "Declared INC-1" in out


def _incident(database_url: str):  # type: ignore[no-untyped-def]
    engine = db.make_engine(database_url)
    try:
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            events = [(e.kind, dict(e.data or {})) for e in svc.timeline(s, inc)]
            return inc, events
    finally:
        engine.dispose()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_impact_start_given_with_the_resolve_is_recorded_as_given_at_the_resolve(
    cli, database_url
):
    _declared(cli)
    code, out, err = cli(
        "incident", "resolve", "INC-1", "restarted", "the", "beacon", "node",
        "--impact-started", "same as declared",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "INC-1: resolved after" in out
    assert "INC-1: impact started at" in out
    inc, events = _incident(database_url)
    assert inc.status == "resolved"
    assert inc.impact_started_at == inc.declared_at
    milestones = [data for kind, data in events if kind == "milestone.set"]
    assert milestones == [milestones[0]] and milestones[0]["via"] == "resolve"


@pytest.mark.parametrize(
    ("given", "message"),
    [("whenever", "use 20m ago"), ("2099-01-01 00:00", "in the future")],
)
def test_an_impact_start_that_cannot_be_read_refuses_the_resolve_and_changes_nothing(
    cli, database_url, given, message
):
    _declared(cli)
    code, _, err = cli("incident", "resolve", "INC-1", "fixed", "--impact-started", given)
    assert code == 1
    assert message in err
    inc, events = _incident(database_url)
    assert inc.status == "triage" and inc.impact_started_at is None
    assert [k for k, _ in events if k in ("incident.resolved", "milestone.set")] == []


def test_an_impact_start_recorded_before_is_not_overwritten_at_the_resolve(cli, database_url):
    code, _, _ = cli("incident", "declare", "RPC down", "--impact-started", "30m ago")
    assert code == 0
    code, _, err = cli("incident", "resolve", "INC-1", "fixed", "--impact-started", "5m ago")
    assert code == 1 and "is already recorded" in err
    inc, _ = _incident(database_url)
    assert inc.status == "triage"


def test_without_a_terminal_the_resolve_says_how_to_record_the_impact_start(cli, database_url):
    _declared(cli)
    code, out, err = cli("incident", "resolve", "INC-1", "fixed")
    assert (code, err) == (0, "")
    assert "incidentbot incident milestone INC-1 impact_started" in out
    inc, _ = _incident(database_url)
    assert inc.status == "resolved" and inc.impact_started_at is None


def test_on_a_terminal_the_resolve_asks_again_until_the_answer_is_a_time(
    cli, database_url, monkeypatch
):
    _declared(cli)
    monkeypatch.setattr(sys, "stdin", _Terminal("[bold]later\n20m ago\n"))
    code, out, err = cli("incident", "resolve", "INC-1", "fixed")
    assert (code, err) == (0, "")
    assert "When did the impact start?" in out
    assert "'[bold]later' is not a time" in out  # shown as typed, not as markup
    assert "INC-1: impact started at" in out
    inc, events = _incident(database_url)
    assert inc.impact_started_at is not None and inc.impact_started_at < inc.resolved_at
    assert [d.get("via") for k, d in events if k == "milestone.set"] == ["resolve"]


def test_on_a_terminal_enter_skips_the_question(cli, database_url, monkeypatch):
    _declared(cli)
    monkeypatch.setattr(sys, "stdin", _Terminal("\n"))
    code, out, _ = cli("incident", "resolve", "INC-1", "fixed")
    assert code == 0 and "impact start not recorded" in out
    inc, _ = _incident(database_url)
    assert inc.status == "resolved" and inc.impact_started_at is None
