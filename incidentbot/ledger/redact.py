"""Masking secrets in what the ledger stores and shows (step input, output, errors).

Steps talk to RPC endpoints whose URLs carry API keys, to Slack with tokens, to PagerDuty with
routing keys. The stored input and output are for people (``runs show``, the timeline, Slack),
so anything that looks secret is replaced by ``***`` before it is written. The hook is small on
purpose: :func:`add_sensitive_keys` and :func:`add_redactor` let other modules (runbooks) teach
it more without editing this file.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

_lock = threading.Lock()
_sensitive: set[str] = {
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "key",
    "apikey",
    "authorization",
    "auth",
    "cookie",
    "credential",
    "credentials",
    "mnemonic",
    "seed",
    "private",
    "privkey",
    "jwt",
    "signature",
}
# Keys that contain a sensitive word but are not secrets, and that people need to read.
_exempt: set[str] = {"idempotency_key", "idempotencykey", "key_id", "public_key"}
_redactors: list[Callable[[str], str]] = []

_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_SLACK = re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}")
# A long opaque path segment in a URL is how hosted RPC providers carry the API key
# (``/v3/<key>``, ``/v2/<key>``): letters and digits mixed, at least 20 long.
_KEY_SEGMENT = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_-]{20,}$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def add_sensitive_keys(*names: str) -> None:
    """Treat dictionary keys containing any of ``names`` (as a word) as secrets."""
    with _lock:
        _sensitive.update(n.lower() for n in names)


def add_redactor(fn: Callable[[str], str]) -> None:
    """Run ``fn`` over every string value after the built-in masking."""
    with _lock:
        _redactors.append(fn)


def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    if lowered in _exempt:
        return False
    words = [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", key).lower()) if w]
    return lowered in _sensitive or any(w in _sensitive for w in words)


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with secret-looking values masked."""
    if isinstance(value, dict):
        return {
            str(k): (MASK if is_sensitive_key(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Mask credentials in URLs, bearer tokens, JWTs and Slack tokens inside free text."""
    text = _URL.sub(lambda m: redact_url(m.group(1)), text)
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _SLACK.sub(MASK, text)
    for fn in list(_redactors):
        text = fn(text)
    return text


def redact_url(url: str) -> str:
    """``https://user:pw@host/v3/<key>?apikey=x`` → ``https://user:***@host/v3/***?apikey=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    path = "/".join(MASK if _KEY_SEGMENT.match(seg) else seg for seg in parts.path.split("/"))
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if is_sensitive_key(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))
