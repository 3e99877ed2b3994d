"""The ledger knows a run's incident only as an opaque subject id: it names it in a refusal and
checks it exists through what the incidents package installed (ledger/subjects.py), on SQLite
and PostgreSQL."""

from __future__ import annotations

import pytest

from incidentbot import db, ledger
from incidentbot.config import Settings
from incidentbot.errors import NotFound
from incidentbot.incidents import service as svc
from tests.conftest import count

STEP = [{"name": "noop", "action": "ledger.noop"}]


def test_a_run_for_an_incident_that_does_not_exist_is_refused_and_nothing_is_written(engine):
    with pytest.raises(NotFound, match="no incident with id 999"), db.transaction(engine) as s:
        ledger.start_run(s, kind="t", key="missing-1", steps=STEP, actor="alice", incident_id=999)
    assert count(engine, "ledger_run") == 0


def test_a_locked_target_is_refused_naming_the_holder_s_incident(engine, settings: Settings):
    with db.transaction(engine) as s:
        inc = svc.declare(s, settings, title="RPC p99 above 2s", severity="SEV2", actor="alice")
        holder = ledger.start_run(
            s, kind="restart-node", key="lock-1", steps=STEP, actor="alice",
            target="rpc-2", incident_id=inc.id,
        )  # fmt: skip
    with pytest.raises(ledger.LockHeld) as refused, db.transaction(engine) as s:
        ledger.start_run(
            s, kind="restart-node", key="lock-2", steps=STEP, actor="bob", target="rpc-2"
        )
    message = str(refused.value)
    assert f"target 'rpc-2' is locked by run {holder.id} (restart-node, pending) for INC-1" in (
        message
    )
    assert f"incidentbot runs cancel {holder.id}" in message
    assert count(engine, "ledger_run") == 1
