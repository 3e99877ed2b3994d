"""Who is on call when: shifts computed from the seeded rotations, and ``GET /oncalls``.

A schedule's layer hands the pager from one user to the next every ``turn_seconds``, counted
from ``virtual_start``; nothing is stored per shift, so any instant in the past or the next 90
days has an answer, and "now" and "next" differ whenever a rotation has two people. An
escalation policy's level N is the union of its rule N's schedules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from incidentbot.sandbox.pagerduty.models import EscalationPolicy, Schedule

MAX_SHIFTS = 10_000  # a guard against a one-second rotation over 90 days


@dataclass(frozen=True)
class Shift:
    schedule_id: str
    user_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class OnCall:
    """One row of ``GET /oncalls``."""

    escalation_policy_id: str
    level: int
    schedule_id: str
    user_id: str
    start: datetime
    end: datetime


def _turn(schedule: Schedule, index: int) -> Shift:
    turn = timedelta(seconds=schedule.turn_seconds)
    start = schedule.virtual_start + index * turn
    user = schedule.users[index % len(schedule.users)]
    return Shift(schedule.id, user, start, start + turn)


def _index(schedule: Schedule, moment: datetime) -> int:
    elapsed = (moment - schedule.virtual_start).total_seconds()
    return math.floor(elapsed / schedule.turn_seconds)


def shift_at(schedule: Schedule, moment: datetime) -> Shift:
    """The shift covering ``moment``."""
    return _turn(schedule, _index(schedule, moment))


def shifts(schedule: Schedule, since: datetime, until: datetime) -> list[Shift]:
    """Shifts overlapping ``[since, until)``; the one covering ``since`` when they are equal."""
    if until <= since:
        return [shift_at(schedule, since)]
    found = []
    index = _index(schedule, since)
    while len(found) < MAX_SHIFTS:
        shift = _turn(schedule, index)
        if shift.start >= until:
            break
        found.append(shift)
        index += 1
    return found


def compute_oncalls(
    policies: Iterable[EscalationPolicy],
    schedules: dict[str, Schedule],
    *,
    since: datetime,
    until: datetime,
    schedule_ids: set[str] | None = None,
    user_ids: set[str] | None = None,
    earliest: bool = False,
) -> list[OnCall]:
    """``GET /oncalls`` rows, ordered by policy, level and start.

    With ``earliest`` only the first on-call of each (policy, level, user) is kept, which is how
    PagerDuty answers "when is each person next on call".
    """
    rows: list[OnCall] = []
    for policy in policies:
        for level, rule in enumerate(policy.rules, start=1):
            for schedule_id in rule.schedule_ids:
                if schedule_ids is not None and schedule_id not in schedule_ids:
                    continue
                for shift in shifts(schedules[schedule_id], since, until):
                    if user_ids is not None and shift.user_id not in user_ids:
                        continue
                    rows.append(
                        OnCall(policy.id, level, schedule_id, shift.user_id, shift.start, shift.end)
                    )
    rows.sort(key=lambda r: (r.escalation_policy_id, r.level, r.start, r.user_id))
    if earliest:
        seen: set[tuple[str, int, str]] = set()
        first = []
        for row in rows:
            key = (row.escalation_policy_id, row.level, row.user_id)
            if key not in seen:
                seen.add(key)
                first.append(row)
        rows = first
    return rows


def on_call_users(
    policy: EscalationPolicy, schedules: dict[str, Schedule], level: int, moment: datetime
) -> list[str]:
    """The users a policy's ``level`` (1-based) reaches at ``moment``, in rule order."""
    rule = policy.rules[level - 1]
    users = [shift_at(schedules[sid], moment).user_id for sid in rule.schedule_ids]
    return list(dict.fromkeys(users))
