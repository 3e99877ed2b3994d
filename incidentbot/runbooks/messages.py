"""The one chat message per runbook run, posted once and then updated in place.

The first post is a ledger step (``runbook.announce``): it looks for a message carrying the
run's block id before posting, so a crash between posting and recording the ts does not post
twice. Updates are derived state: whenever the ledger reports a change to a runbook run, the
run is marked dirty and a background thread re-renders it from the database (changes that
arrive together are coalesced into one update). A periodic sweep catches changes committed by
other processes (a separate worker, another replica) and updates missed while Slack was down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from incidentbot import db
from incidentbot.ledger.actions import PermanentError
from incidentbot.ledger.events import LedgerEvent
from incidentbot.ledger.models import Run
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks import view as views
from incidentbot.runbooks.models import RunbookRun

if TYPE_CHECKING:
    from incidentbot.ports import Chat

log = logging.getLogger(__name__)

Render = Callable[[views.RunView, str | None], tuple[str, list[dict[str, Any]]]]
BlockId = Callable[[int], str]
Link = Callable[[int], str | None]


class RunMessages:
    def __init__(
        self,
        db_engine: Engine,
        chat: Chat,
        render: Render,
        block_id: BlockId,
        link: Link = lambda run_id: None,
        *,
        sweep_every: float = 5.0,
        coalesce: float = 0.25,
    ):
        self.engine = db_engine
        self.chat = chat
        self.render = render
        self.block_id = block_id
        self.link = link
        self.sweep_every = sweep_every
        self.coalesce = coalesce
        self._dirty: set[int] = set()
        self._seen: dict[int, Any] = {}  # run id -> ledger updated_at last rendered
        self._lock = threading.Lock()
        self._post_locks: dict[int, threading.Lock] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the first post (a ledger step) ------------------------------------------------------

    def announce(self, run_id: int, *, recover: bool = True) -> dict[str, Any]:
        """Post the run's message, or update the one already posted. ``recover``: an earlier
        attempt may have posted it without recording it (it was cut off by a crash or a
        timeout), so look for it in the channel first; a first attempt reads nothing back."""
        with self._lock:
            lock = self._post_locks.setdefault(run_id, threading.Lock())
        with lock:
            with db.read(self.engine) as s:
                row, _ = rb_engine.load(s, run_id)
                view = views.load(s, run_id)
            if not row.channel_id:
                raise PermanentError("the run has no channel to post in")
            text, blocks = self.render(view, self.link(run_id))
            ts = row.message_ts
            if not ts and recover:
                ts = self.chat.find_message(row.channel_id, self.block_id(run_id))
            if ts:
                self.chat.update(row.channel_id, ts, text, blocks)
            else:
                ts = self.chat.post(row.channel_id, text, blocks)
            if row.message_ts != ts:
                with db.transaction(self.engine) as s:
                    fresh = s.get(RunbookRun, row.id)
                    assert fresh is not None
                    fresh.message_ts = ts
                    s.add(fresh)
        self.mark(run_id)  # the state may have moved on while posting
        return {"channel": row.channel_id, "ts": ts}

    # -- updates -------------------------------------------------------------------------------

    def on_ledger_event(self, ev: LedgerEvent) -> None:
        if rb_engine.is_runbook_kind(ev.run_kind):
            self.mark(ev.run_id)

    def mark(self, run_id: int) -> None:
        with self._lock:
            self._dirty.add(run_id)
        self._wake.set()

    def refresh(self, run_id: int) -> bool:
        """Re-render one run's message; False if it has none yet (or the update failed)."""
        with db.read(self.engine) as s:
            row = s.exec(select(RunbookRun).where(RunbookRun.run_id == run_id)).first()
            if row is None or not row.message_ts or not row.channel_id:
                return False
            view = views.load(s, run_id)
            updated = s.get(Run, run_id).updated_at  # type: ignore[union-attr]
        text, blocks = self.render(view, self.link(run_id))
        try:
            self.chat.update(row.channel_id, row.message_ts, text, blocks)
        except Exception as exc:
            log.warning("could not update the message of run %s: %s", run_id, exc)
            return False
        with self._lock:
            self._seen[run_id] = updated
        return True

    def start(self) -> RunMessages:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="runbook-messages", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        self._sweep(first=True)
        next_sweep = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.sweep_every)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._stop.wait(self.coalesce)  # let a burst of transitions settle
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            failed = {rid for rid in sorted(dirty) if not self._safe_refresh(rid)}
            with self._lock:
                self._dirty |= {rid for rid in failed if self._has_message(rid)}
            next_sweep -= 1
            if next_sweep <= 0:
                self._sweep()
                next_sweep = 3

    def _safe_refresh(self, run_id: int) -> bool:
        try:
            return self.refresh(run_id)
        except Exception:
            log.exception("runbook message refresh failed for run %s", run_id)
            return False

    def _has_message(self, run_id: int) -> bool:
        with db.read(self.engine) as s:
            row = s.exec(select(RunbookRun).where(RunbookRun.run_id == run_id)).first()
            return row is not None and bool(row.message_ts)

    def _sweep(self, first: bool = False) -> None:
        """Runs changed by another process, or not rendered since this process started."""
        try:
            with db.read(self.engine) as s:
                since = db.db_now(s) - timedelta(days=1 if first else 0, minutes=10)
                rows = s.exec(
                    select(RunbookRun.run_id, Run.updated_at)
                    .join(Run, Run.id == RunbookRun.run_id)  # type: ignore[arg-type]
                    .where(RunbookRun.message_ts.is_not(None))  # type: ignore[union-attr]
                    .where(Run.updated_at >= since)  # type: ignore[arg-type]
                ).all()
            with self._lock:
                stale = [rid for rid, at in rows if self._seen.get(rid) != at]
            for rid in stale:
                self._safe_refresh(rid)
        except Exception:
            log.exception("runbook message sweep failed")
