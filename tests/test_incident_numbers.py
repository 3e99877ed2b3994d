"""INC numbers on SQLite and PostgreSQL: fifty declares at once get fifty numbers with no gap
and no repeat, a refused declare changes nothing and takes no number, a declare that fails at
the database gives its number back on SQLite and leaves it unused on PostgreSQL (the documented
gap), and the numbering continues across the migration to PostgreSQL's sequence and back."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.ledger.actions import registry
from incidentbot.ledger.models import Run
from incidentbot.usecases import incidents as uc
from incidentbot.usecases.core import Actor, Core
from tests.conftest import count

GATE = 60.0
ALICE = Actor("alice", "cli")
PAGERDUTY = {"services": {"rpc": {"service_id": "PRPC"}}}
TABLES = ("incident", "timeline_event", "role_assignment", "ledger_run", "page")


@pytest.fixture(autouse=True)
def chat_actions() -> None:
    # The declares only queue their runs here (no worker runs them); the actions must be known.
    for name in ("chat.open_channel", "chat.header", "chat.digest", "pager.trigger"):
        if registry.get(name) is None:
            registry.register(name, lambda *_a, **_k: None, idempotent=True)


def _numbers(engine: Any) -> list[int]:
    with db.read(engine) as s:
        return [i.number for i in s.exec(select(Incident).order_by(col(Incident.number)))]


def _counts(engine: Any) -> tuple[int, ...]:
    return tuple(count(engine, table) for table in TABLES)


def test_fifty_concurrent_declares_get_fifty_numbers_without_a_gap(engine, settings):
    n = 50
    core = Core(settings, engine)
    start = threading.Barrier(n)
    results: dict[int, uc.Declared] = {}
    errors: list[BaseException] = []

    def declare(i: int) -> None:
        try:
            start.wait(GATE)
            results[i] = uc.declare(core, ALICE, title=f"validator {i} missed attestations")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=declare, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(GATE * 2)
    assert not any(th.is_alive() for th in threads) and errors == []
    assert _numbers(engine) == list(range(1, n + 1))  # fifty numbers, no gap, no repeat
    assert sorted(out.ref for out in results.values()) == sorted(f"INC-{i}" for i in range(1, 51))
    with db.read(engine) as s:
        incidents = {i.id: i for i in s.exec(select(Incident))}
        declared = list(
            s.exec(select(TimelineEvent).where(TimelineEvent.kind == "incident.declared"))
        )
        runs = {r.idempotency_key: r.incident_id for r in s.exec(select(Run))}
    # What the declare wrote with its number agrees with the number the incident kept.
    for out in results.values():
        assert incidents[out.incident_id].ref == out.ref
        assert runs[f"{out.ref}:channel"] == out.incident_id
    assert sorted(e.summary.split(" ")[1] for e in declared) == sorted(
        f"INC-{i}" for i in range(1, n + 1)
    )
    for event in declared:
        assert event.summary.startswith(f"Declared {incidents[event.incident_id].ref} ")


def test_a_refused_declare_changes_nothing_and_takes_no_number(engine, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", pagerduty=PAGERDUTY)
    core = Core(settings, engine)
    assert uc.declare(core, ALICE, title="RPC down").ref == "INC-1"
    before = _counts(engine)
    refusals = [
        (dict(title="   "), "the title is empty"),
        (dict(title="x" * 300), "at most 200"),
        (dict(title="RPC down", severity="9"), "severity"),
        (dict(title="RPC down", severity="1", service="bridges"), "unknown service 'bridges'"),
    ]
    for kwargs, message in refusals:
        with pytest.raises(DomainError, match=message):
            uc.declare(core, ALICE, **kwargs)  # type: ignore[arg-type]
    assert _counts(engine) == before
    paged = uc.declare(core, ALICE, title="Bridge relayer stuck", severity="1", service="rpc")
    assert (paged.ref, paged.paged) == ("INC-2", "rpc")  # the refusals took no number


def test_a_declare_failing_at_the_database_stores_nothing(engine, settings, backend):
    """After its number a declare can still fail at the database (here its commit is made to
    fail). Nothing of it is stored; SQLite gives the number back, PostgreSQL's sequence does
    not (docs/storage.md: a gap, never a repeat)."""
    assert uc.declare(Core(settings, engine), ALICE, title="first").ref == "INC-1"
    before = _counts(engine)
    with pytest.raises(RuntimeError, match="disk full"), db.transaction(engine) as s:
        svc.declare(s, settings, title="lost", severity="3", actor="alice")
        s.flush()
        raise RuntimeError("disk full")
    assert _counts(engine) == before
    after = uc.declare(Core(settings, engine), ALICE, title="third").ref
    assert after == ("INC-2" if backend == "sqlite" else "INC-3")
    assert _numbers(engine) == ([1, 2] if backend == "sqlite" else [1, 3])


def test_numbering_continues_across_the_sequence_migration_and_back(engine, settings, backend):
    core = Core(settings, engine, chat=False)
    for title in ("one", "two", "three"):
        uc.declare(core, ALICE, title=title)
    db.downgrade(engine, "0020")
    with engine.connect() as conn:
        counter = conn.execute(text("SELECT value FROM counter WHERE name = 'incident'")).scalar()
    assert counter == 3  # the counter the older incidentbot reads says the last number used
    db.upgrade(engine)
    assert uc.declare(core, ALICE, title="four").ref == "INC-4"
    if backend == "postgresql":
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM counter WHERE name = 'incident'"))
            assert rows.scalar_one() == 0  # one source of numbers: the sequence
    assert _numbers(engine) == [1, 2, 3, 4]
