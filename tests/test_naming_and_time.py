"""Channel names within Slack's rules; durations and times as people type them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from incidentbot.durations import format_duration, parse_duration, parse_when
from incidentbot.incidents.naming import channel_name, slugify

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
SLACK = re.compile(r"^[a-z0-9_-]{1,80}$")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("RPC p99 latency above 2s on mainnet", "inc-12-rpc-p99-latency-above-2s-on-mainnet"),
        ("Géth nœud  désynchronisé!!", "inc-12-geth-noeud-desynchronise"),
        ("🔥🔥🔥", "inc-12"),
        (
            "Validators missing attestations (Lighthouse v5.1)",
            "inc-12-validators-missing-attestations-lighthouse-v5-1",
        ),
    ],
)
def test_channel_names_follow_slack_rules(title, expected):
    name = channel_name(
        "inc-{number}-{slug}", number=12, title=title, severity="SEV2", declared_at=NOW
    )
    assert name == expected and SLACK.match(name)


def test_long_titles_are_cut_at_a_word_boundary_to_80_chars():
    title = "Erigon archive node on mainnet stuck at block 21000000 after upgrade " * 3
    name = channel_name(
        "inc-{number}-{slug}",
        number=12345,
        title=title,
        severity="SEV1",
        declared_at=NOW,
        suffix="-2",
    )
    assert len(name) <= 80 and SLACK.match(name) and name.endswith("-2")
    assert not name.removesuffix("-2").endswith("-")
    body = name.removeprefix("inc-12345-").removesuffix("-2")
    assert slugify(title).startswith(body) and slugify(title)[len(body)] == "-"


def test_other_placeholders():
    name = channel_name(
        "{date}-{severity}-{number}", number=7, title="x", severity="SEV1", declared_at=NOW
    )
    assert name == "20261122-sev1-7"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("45", 45),
        (" 1h 5m ", 3900),
        (120, 120),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["soon", "1y", "-5m", "m", "", "1.5h"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_points_in_time():
    assert parse_when("now", NOW) == NOW
    assert parse_when("45m ago", NOW) == NOW - timedelta(minutes=45)
    assert parse_when("2026-11-22T05:10Z", NOW) == datetime(2026, 11, 22, 5, 10, tzinfo=UTC)
    assert parse_when("2026-11-22 06:10+01:00", NOW) == datetime(2026, 11, 22, 5, 10, tzinfo=UTC)
    assert parse_when("2026-11-22 05:10", NOW).tzinfo == UTC
    with pytest.raises(ValueError, match="use ISO 8601"):
        parse_when("yesterday-ish", NOW)


def test_format_duration():
    assert format_duration(None) == "unknown"
    assert format_duration(timedelta(seconds=5)) == "5s"
    assert format_duration(timedelta(minutes=3, seconds=7)) == "3m 07s"
    assert format_duration(timedelta(hours=26)) == "1d 02h"
    assert format_duration(timedelta(minutes=-20)) == "-20m 00s"
