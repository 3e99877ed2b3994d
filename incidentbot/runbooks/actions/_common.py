"""Helpers the built-in actions share: durations and URLs in inputs, masking, truncation."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator

from incidentbot.durations import parse_duration
from incidentbot.ledger.redact import redact_text, redact_url
from incidentbot.runbooks.actions.base import ActionContext


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected seconds or a duration such as 10s or 5m, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            return parse_duration(text).total_seconds()
    if value != value or value in (float("inf"), float("-inf")):  # NaN, infinity
        raise ValueError(f"expected a finite number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return float(value)


# A number of seconds, or a duration string ("10s", "5m", "1h30m").
Seconds = Annotated[float, BeforeValidator(_seconds)]


def fmt_seconds(seconds: float) -> str:
    """``60`` → ``60s``, ``0.5`` → ``0.5s``."""
    return f"{seconds:g}s"


def shown(ctx: ActionContext, text: str) -> str:
    """``text`` as people may see it: the run's secret values and secret shapes masked."""
    return redact_text(ctx.mask(text))


def truncate_bytes(data: bytes, limit: int, total: int | None = None) -> str:
    """Decode ``data`` (UTF-8, invalid bytes replaced), keeping at most ``limit`` bytes and
    saying how much was left out."""
    total = len(data) if total is None else total
    if total <= limit and len(data) <= limit:
        return data.decode("utf-8", errors="replace")
    head = data[:limit].decode("utf-8", errors="replace")
    return f"{head}\n… [truncated: first {limit} of {total} bytes shown]"


def masked_url(url: str) -> str:
    """``url`` with its credentials masked, also when it lacks a scheme."""
    if "://" in url:
        return redact_text(url)
    return redact_url("https://" + url).removeprefix("https://")


def http_url(value: str) -> str:
    """An ``http://`` or ``https://`` URL with a host (ValueError saying what is wrong)."""
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{masked_url(value)!r} is not an http:// or https:// URL with a host name"
        )
    return value
