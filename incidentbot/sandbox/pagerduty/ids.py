"""PagerDuty-shaped identifiers, keys and timestamps.

Object ids are ``P`` and six upper-case letters or digits (``PT4KHLK``), integration keys and
generated dedup keys 32 lower-case hex digits, webhook event ids UUIDs. Bots branch on none
of these, but they log and store them, and a seeded generator keeps a demo's ids identical
from one run to the next. Times are ISO 8601 in UTC with a ``Z``, to the second, as the REST
API writes them.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class PdIds:
    """Issues unique ids, keys and UUIDs from one seeded generator."""

    def __init__(self, seed: int = 11) -> None:
        self._random = random.Random(seed)  # noqa: S311 - identifiers, not secrets
        self._issued: set[str] = set()
        self._lock = threading.Lock()

    def new(self, prefix: str = "P", length: int = 6) -> str:
        """A fresh id such as ``PX3K9QA`` that this generator has never issued."""
        with self._lock:
            while True:
                candidate = prefix + "".join(self._random.choice(_ALPHABET) for _ in range(length))
                if candidate not in self._issued:
                    self._issued.add(candidate)
                    return candidate

    def key(self) -> str:
        """32 hex digits: an integration (routing) key, a generated dedup key, a secret."""
        with self._lock:
            return f"{self._random.getrandbits(128):032x}"

    def uuid(self) -> str:
        """A version-4 UUID string (webhook event ids)."""
        with self._lock:
            return str(uuid.UUID(int=self._random.getrandbits(128), version=4))


def to_datetime(seconds: float) -> datetime:
    """Seconds since the epoch as an aware UTC datetime (whole seconds, as PagerDuty shows)."""
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def iso(moment: datetime) -> str:
    """``2026-03-02T09:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 date or date-time; naive values are taken as UTC. Raises ``ValueError``."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
