"""Slack-shaped identifiers and message timestamps.

Slack ids are a type letter followed by upper-case letters and digits (``C07QX9K3M2A``); the
vendor's schemas check those patterns, and bots often branch on the first letter, so the
sandbox issues ids of the same shape. A seeded generator keeps a demo transcript identical from
one run to the next.
"""

from __future__ import annotations

import random
import threading

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class IdFactory:
    """Issues unique ids such as ``C0…`` (channels), ``U0…`` (users), ``S0…`` (user groups)."""

    def __init__(self, seed: int = 7, length: int = 10) -> None:
        self._random = random.Random(seed)  # noqa: S311 - ids, not secrets
        self._length = length
        self._issued: set[str] = set()
        self._lock = threading.Lock()

    def new(self, prefix: str) -> str:
        """A fresh id with ``prefix`` that has never been issued by this factory."""
        with self._lock:
            while True:
                body = "0" + "".join(
                    self._random.choice(_ALPHABET) for _ in range(self._length - 1)
                )
                candidate = prefix + body
                if candidate not in self._issued:
                    self._issued.add(candidate)
                    return candidate

    def secret(self, length: int = 24) -> str:
        """A random token for URLs such as a response_url (unguessable enough for a sandbox)."""
        with self._lock:
            return "".join(self._random.choice(_ALPHABET.lower()) for _ in range(length))


def format_ts(seconds: float) -> str:
    """Slack's message timestamp format: ten digits, a dot, six digits."""
    micros = round(seconds * 1_000_000)
    return f"{micros // 1_000_000:010d}.{micros % 1_000_000:06d}"


def parse_ts(ts: str) -> float:
    """The seconds a message ``ts`` stands for; raises ``ValueError`` for anything else."""
    whole, _, frac = ts.partition(".")
    if not (whole.isdigit() and frac.isdigit() and len(frac) == 6):
        raise ValueError(f"not a Slack ts: {ts!r}")
    return int(whole) + int(frac) / 1_000_000


class TsClock:
    """Hands out strictly increasing message timestamps.

    Slack identifies a message by ``(channel, ts)``, so two messages posted within the same
    microsecond must still get different ``ts`` values.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self, now: float) -> str:
        """The ts for a message created at ``now`` (bumped by 1 µs if needed to stay unique)."""
        with self._lock:
            micros = max(round(now * 1_000_000), self._last + 1)
            self._last = micros
            return format_ts(micros / 1_000_000)
