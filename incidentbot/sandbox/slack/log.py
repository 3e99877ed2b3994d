"""The request log: every Web API call the sandbox answered, for assertions and spec checks.

Tests assert on what the bot actually sent (``sandbox.requests("chat.postMessage")``), and
``spec.check_request_log`` checks every entry against the vendor's API description. The log
also travels as JSON (``GET /_sandbox/log``) so a bot running in another process can be checked.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LoggedRequest:
    """One Web API call and the answer it got.

    The token itself is never kept (secrets stay out of logs): ``token_source`` says where it
    came from (``header`` or ``body``) and ``user`` whom it authenticated.
    """

    seq: int
    method: str
    http_method: str
    args: dict[str, Any]
    user: str | None
    token_source: str | None
    content_type: str
    status: int
    response: dict[str, Any] | None
    started_at: float
    duration_s: float
    fault: str | None = None
    delay_s: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def error(self) -> str | None:
        if self.response is None or self.response.get("ok"):
            return None
        return self.response.get("error")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoggedRequest:
        fields = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass
class RequestLog:
    """Thread-safe, append-only list of ``LoggedRequest``."""

    _entries: list[LoggedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Bumped by clear(): a request that began before a clear is not logged after it (a call
    # held open by a timeout fault would otherwise land in the next test's log).
    generation: int = 0

    def append(self, entry: LoggedRequest, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            entry.seq = len(self._entries) + 1
            self._entries.append(entry)

    def entries(self, method: str | None = None) -> list[LoggedRequest]:
        """All calls so far, optionally only those of one method, oldest first."""
        with self._lock:
            return [e for e in self._entries if method is None or e.method == method]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
