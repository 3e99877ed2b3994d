"""The durable effects a declare queued, followed from the command line (``declare --wait``).

They are ledger runs executed by whichever ``serve`` or ``worker`` runs against the same
database; the CLI only reads them.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.cli.common import console
from incidentbot.incidents import service as svc
from incidentbot.incidents.effects import EFFECTS
from incidentbot.incidents.runs import list_runs
from incidentbot.ledger.models import FAILED, SETTLED, Run
from incidentbot.paging.flows import pages_of

POLL = 0.2


def _runs(engine: Engine, ref: str) -> list[Run]:
    with db.transaction(engine) as s:
        return sorted((r.run for r in list_runs(s, incident=ref, limit=200)), key=_run_id)


def _run_id(run: Run) -> int:
    return run.id or 0


_PAGING = {
    "incident.page": "page on-call",
    "incident.unpage": "resolve the page",
    "incident.page_note": "link the channel in the page",
}


def _what(run: Run) -> str:
    return EFFECTS.get(run.kind) or _PAGING.get(run.kind, run.kind)


def say_queued(engine: Engine, ref: str) -> None:
    pending = [r for r in _runs(engine, ref) if r.status not in SETTLED]
    if pending:
        console.print(f"Queued for the bot: {'; '.join(dict.fromkeys(_what(r) for r in pending))}.")
        console.print(
            "A running `incidentbot serve` or `incidentbot worker` carries them out "
            f"(`incidentbot runs list --incident {ref}` shows them)."
        )


def follow(engine: Engine, ref: str, *, timeout: float) -> bool:
    """Wait until every run of the incident has ended (or ``timeout`` seconds); print the
    channel, the pages and what failed or is still queued. True when all succeeded."""
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        runs = _runs(engine, ref)
        pending = [r for r in runs if r.status not in SETTLED]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    with db.transaction(engine) as s:
        inc = svc.get(s, ref)
        pages = pages_of(s, inc)
    if inc.channel_name:
        console.print(f"Channel: #{inc.channel_name}", markup=False, emoji=False)
    for p in pages:
        number = f" #{p.number}" if p.number else ""
        console.print(f"Page{number}: {p.service} on-call, {p.status}", markup=False, emoji=False)
    failed = [r for r in runs if r.status in SETTLED and r.status != "succeeded"]
    for run in failed:
        state = "failed" if run.status == FAILED else run.status.replace("_", " ")
        error = f" ({run.error})" if run.error else ""
        console.print(f"Could not {_what(run)}: {state}{error}", markup=False, emoji=False)
    if pending:
        console.print(
            f"Still queued after {timeout:g}s: "
            f"{'; '.join(dict.fromkeys(_what(r) for r in pending))}."
        )
        console.print(
            "Is `incidentbot serve` or `incidentbot worker` running against this database?"
        )
    return not pending and not failed
