"""The rotation arithmetic behind GET /oncalls, checked over arbitrary instants and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from incidentbot.sandbox.pagerduty.models import EscalationPolicy, EscalationRule, Schedule
from incidentbot.sandbox.pagerduty.oncall import compute_oncalls, shift_at, shifts

EPOCH = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
instants = st.datetimes(
    min_value=datetime(2023, 6, 1), max_value=datetime(2027, 6, 1), timezones=st.just(UTC)
)
rotations = st.builds(
    lambda users, turn: Schedule("PSCHED1", "rota", "", users, EPOCH, turn, "PLAYER1"),
    st.lists(st.sampled_from(["PA", "PB", "PC", "PD"]), min_size=1, max_size=4),
    st.integers(min_value=3600, max_value=14 * 24 * 3600),
)


@settings(max_examples=200, deadline=None)
@given(rotations, instants)
def test_the_shift_at_an_instant_covers_it(schedule: Schedule, moment: datetime) -> None:
    shift = shift_at(schedule, moment)
    assert shift.start <= moment < shift.end
    assert (shift.end - shift.start).total_seconds() == schedule.turn_seconds
    turns = round((shift.start - EPOCH).total_seconds() / schedule.turn_seconds)
    assert shift.user_id == schedule.users[turns % len(schedule.users)]


@settings(max_examples=200, deadline=None)
@given(rotations, instants, st.integers(min_value=1, max_value=60 * 24 * 3600))
def test_shifts_tile_a_window(schedule: Schedule, since: datetime, seconds: int) -> None:
    until = since + timedelta(seconds=seconds)
    found = shifts(schedule, since, until)
    assert found[0].start <= since < found[0].end
    assert found[-1].start < until <= found[-1].end
    for before, after in pairwise(found):
        assert before.end == after.start
        assert after.user_id == shift_at(schedule, after.start).user_id


@settings(max_examples=100, deadline=None)
@given(instants, st.integers(min_value=1, max_value=30))
def test_earliest_keeps_each_persons_first_shift(since: datetime, days: int) -> None:
    primary = Schedule("PSCHED1", "primary", "", ["PA", "PB", "PC"], EPOCH, 86400, "PL1")
    leads = Schedule("PSCHED2", "leads", "", ["PD", "PA"], EPOCH, 7 * 86400, "PL2")
    policy = EscalationPolicy(
        "PPOLICY",
        "p",
        "",
        [EscalationRule("R1", 5, ["PSCHED1"]), EscalationRule("R2", 30, ["PSCHED2"])],
    )
    schedules = {s.id: s for s in (primary, leads)}
    until = since + timedelta(days=days)
    every = compute_oncalls([policy], schedules, since=since, until=until)
    first = compute_oncalls([policy], schedules, since=since, until=until, earliest=True)
    keys = [(r.level, r.user_id) for r in first]
    assert len(keys) == len(set(keys)) == len({(r.level, r.user_id) for r in every})
    for row in first:
        assert row.start == min(
            r.start for r in every if (r.level, r.user_id) == (row.level, row.user_id)
        )
