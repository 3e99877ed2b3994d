"""Injected failures, added latency and Slack-like rate limits.

The bot must survive Slack answering 429, failing with a 5xx or not answering in time. Tests
arm a fault for the next N calls of a method and check that the bot retries and recovers;
benchmarks add a fixed latency to every call to see what the bot does concurrently. Rate
limits are off by default so ordinary tests never see a 429 they did not ask for.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["ratelimited", "server_error", "timeout"]
FAULT_KINDS: tuple[str, ...] = ("ratelimited", "server_error", "timeout")
ANY_METHOD = "*"
# The name that faults and latency take for posts to response_urls (hooks.slack.com, not the
# Web API): they apply only when armed under this name, never through ``"*"``.
RESPONSE_URL = "response_url"

# Slack's documented tiers, in calls per minute, for the methods the sandbox serves.
TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}
METHOD_TIERS: dict[str, int] = {
    "apps.connections.open": 1,
    "auth.test": 4,
    "bookmarks.add": 2,
    "chat.getPermalink": 4,
    "chat.postEphemeral": 4,
    "chat.update": 3,
    "conversations.archive": 2,
    "conversations.create": 2,
    "conversations.history": 3,
    "conversations.info": 3,
    "conversations.invite": 3,
    "conversations.join": 3,
    "conversations.list": 2,
    "conversations.members": 4,
    "conversations.open": 3,
    "conversations.rename": 2,
    "conversations.setPurpose": 3,
    "conversations.setTopic": 3,
    "pins.add": 2,
    "reactions.add": 3,
    "usergroups.list": 2,
    "usergroups.users.list": 2,
    "users.info": 4,
    "users.list": 2,
    "users.lookupByEmail": 3,
    "views.open": 4,
    "views.push": 4,
    "views.update": 4,
}
# chat.postMessage: about one message per second per channel, with short bursts tolerated.
POST_MESSAGE_RATE_PER_S = 1.0
POST_MESSAGE_BURST = 3


@dataclass
class Fault:
    """One armed failure: what happens to the next ``remaining`` calls of ``method``."""

    method: str
    kind: FaultKind
    remaining: int = 1
    retry_after: int = 1
    status: int = 500
    hold_s: float = 31.0
    applied: bool = False
    channel: str | None = None  # only calls naming this channel id
    after: Callable[[], None] | None = None  # run once the call took effect, before answering

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        if self.remaining < 1:
            raise ValueError("a fault applies to at least one call")


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 if there was one, else the seconds until there will be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


@dataclass
class RateLimiter:
    """Token buckets per method (and per channel for chat.postMessage), off by default."""

    enabled: bool = False
    clock: Callable[[], float] = time.monotonic
    overrides: dict[str, tuple[float, float]] = field(default_factory=dict)
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def limits(self, method: str) -> tuple[float, float]:
        """``(burst capacity, calls per second)`` for a method."""
        if method in self.overrides:
            return self.overrides[method]
        if method == "chat.postMessage":
            return float(POST_MESSAGE_BURST), POST_MESSAGE_RATE_PER_S
        per_minute = TIER_PER_MINUTE[METHOD_TIERS.get(method, 3)]
        return float(per_minute), per_minute / 60.0

    def check(self, method: str, channel: str | None = None) -> int:
        """0 if the call may proceed, else the ``Retry-After`` seconds Slack would send."""
        if not self.enabled:
            return 0
        key = (method, (channel or "") if method == "chat.postMessage" else "")
        with self._lock:
            bucket = self._buckets.get(key)
            now = self.clock()
            if bucket is None:
                capacity, rate = self.limits(method)
                bucket = self._buckets[key] = _Bucket(capacity, rate, capacity, now)
            wait = bucket.take(now)
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


@dataclass
class FaultPlan:
    """Armed faults and added latency, shared by every request handler."""

    faults: list[Fault] = field(default_factory=list)
    latency_s: float = 0.0
    latency_methods: frozenset[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def take(self, method: str, channel: str | None = None) -> Fault | None:
        """The fault that applies to this call of ``method`` (consuming one of its uses)."""
        names = (RESPONSE_URL,) if method == RESPONSE_URL else (method, ANY_METHOD)
        with self._lock:
            for fault in self.faults:
                if fault.channel is not None and fault.channel != channel:
                    continue
                if fault.method in names:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self.faults)

    def latency_for(self, method: str) -> float:
        """Seconds to wait before answering ``method`` (for latency benchmarks)."""
        if method == RESPONSE_URL and RESPONSE_URL not in (self.latency_methods or ()):
            return 0.0
        if self.latency_methods is not None and method not in self.latency_methods:
            return 0.0
        return self.latency_s

    def set_latency(self, seconds: float, methods: list[str] | None = None) -> None:
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        with self._lock:
            self.latency_s = seconds
            self.latency_methods = frozenset(methods) if methods else None

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.latency_s = 0.0
            self.latency_methods = None
