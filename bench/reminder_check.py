"""The cost of the once-a-minute status update check with many open incidents.

Declares ``--incidents`` open incidents (SEV1-SEV4, each with a channel id and ``--updates``
status updates on its timeline, plus as many notes), then, on each back end, times
``StatusReminders.check``: first when nothing is due (the steady cost every minute), then when
every incident is due, posting each reminder to the local Slack-compatible server over HTTP.
Prints medians. No assertions.

    .venv/bin/python bench/reminder_check.py [--incidents 500] [--updates 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends import each_backend
from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import TimelineEvent
from incidentbot.reminders.status import StatusReminders
from incidentbot.sandbox.slack.server import SlackSandbox
from incidentbot.slack.chat import SlackChat

T0 = datetime(2024, 5, 7, 8, 0, tzinfo=UTC)


def seed(engine, settings: Settings, channel: str, incidents: int, updates: int) -> None:
    severities = ["SEV1", "SEV2", "SEV3", "SEV4"]
    with db.transaction(engine) as s:
        for n in range(incidents):
            inc = svc.declare(s, settings, title=f"RPC node {n} lagging",
                              severity=severities[n % 4], actor="U0ALICE01", now=T0)  # fmt: skip
            inc.channel_id = channel  # as if its channel had been created
            s.add(inc)
            s.flush()
            for u in range(updates):
                for kind in ("status.update", "note"):
                    at = T0 + timedelta(minutes=u + 1)
                    s.add(TimelineEvent(incident_id=inc.id, occurred_at=at, recorded_at=at,
                                        kind=kind, actor="U0ALICE01",
                                        summary=f"{kind} {u} on node {n}", data={}))  # fmt: skip


def measure(name: str, url: str, incidents: int, updates: int, repeat: int) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    try:
        with tempfile.TemporaryDirectory() as tmp, SlackSandbox() as slack:
            settings = Settings(data_dir=Path(tmp))
            channel = slack.workspace.channel("incidents").id
            seed(engine, settings, channel, incidents, updates)
            chat = SlackChat(slack.bot_token, base_url=slack.base_url)
            reminders = StatusReminders(settings, engine, chat)
            last = T0 + timedelta(minutes=updates)
            idle = []
            for _ in range(repeat):
                started = time.perf_counter()
                sent = reminders.check(last + timedelta(minutes=1))
                idle.append(time.perf_counter() - started)
                assert sent == 0
            busy = []
            for r in range(repeat):  # each pass one day later: every incident is due again
                started = time.perf_counter()
                sent = reminders.check(last + timedelta(days=r + 1))
                busy.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    events = incidents * updates * 2
    print(f"{name:<11} {incidents} open incidents, {events:,} timeline events, median of {repeat}:")
    print(f"  nothing due                 {statistics.median(idle) * 1000:8.1f} ms")
    print(f"  all due ({sent} posted)     {statistics.median(busy) * 1000:8.0f} ms"
          f"   ({statistics.median(busy) / max(sent, 1) * 1000:.1f} ms per reminder)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=500)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    each_backend(lambda n, u: measure(n, u, args.incidents, args.updates, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
