"""Masking secrets in what the ledger stores and shows (step input, output, errors).

Steps talk to RPC endpoints whose URLs carry API keys, to Slack with tokens, to PagerDuty with
routing keys. The stored input and output are for people (``runs show``, the timeline, Slack),
so anything that looks secret is replaced by ``***`` before it is written. The hook is small on
purpose: :func:`add_sensitive_keys` and :func:`add_redactor` let other modules (runbooks) teach
it more without editing this file, and :func:`masker` builds a function that also hides a run's
own secret values wherever they appear.

What is masked, and what is deliberately left readable, is described with the rules in
:mod:`incidentbot.ledger.redact_rules`; this module is the entry point: the registry of
sensitive keys and extra redactors, and the cache of answers.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from incidentbot.ledger import redact_rules as rules
from incidentbot.ledger.redact_keys import MASK as MASK
from incidentbot.ledger.redact_keys import bip39_words as bip39_words

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
    # the encrypted key of an Ethereum keystore file
    "crypto",
    "ciphertext",
    "kdfparams",
    "cipherparams",
}
# Keys that contain a sensitive word but are not secrets, and that people need to read.
_exempt: set[str] = {"idempotency_key", "idempotencykey", "key_id", "public_key"}
_redactors: list[Callable[[str], str]] = []
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


# -- remembering what was masked ---------------------------------------------------------------
#
# Alerts repeat the same label values thousands of times (every repeat of a notification, every
# timeline event of its alerts), and masking is a pure function of the text and of the rules
# registered so far. So :func:`redact_text` remembers its answers for short texts. The cache is
# keyed by a keyed hash of the text (a key drawn per process), never by the text itself: the
# cache must not become a second place where a secret that arrived stays in memory. The rules'
# generation is part of the key, so a rule added later (:func:`add_redactor`,
# :func:`add_sensitive_keys`) is never bypassed by an answer remembered before it.

CACHE_ENTRIES = 16384  # at most this many answers (then the cache starts again empty)
CACHE_TEXT_MAX = 1024  # longer texts (step output, payload dumps) are masked every time
_cache_key = os.urandom(16)
_cache: dict[tuple[int, bytes], str] = {}
_key_cache: dict[tuple[int, str], bool] = {}
_generation = 0


def _rules_changed() -> None:
    """Called with ``_lock`` held after a rule is added: forget every remembered answer."""
    global _generation
    _generation += 1
    _cache.clear()
    _key_cache.clear()


def rules_generation() -> int:
    """Which rules are in force: a number that changes whenever a rule is added. A value
    masked under one generation may need masking again under a later one."""
    return _generation


def add_sensitive_keys(*names: str) -> None:
    """Treat dictionary keys containing any of ``names`` (as a word) as secrets."""
    with _lock:
        _sensitive.update(n.lower() for n in names)
        _rules_changed()


def add_redactor(fn: Callable[[str], str]) -> None:
    """Run ``fn`` over every string value after the built-in masking."""
    with _lock:
        _redactors.append(fn)
        _rules_changed()


def is_sensitive_key(key: str) -> bool:
    remembered = (_generation, key) if len(key) <= 128 else None
    if remembered is not None:
        known = _key_cache.get(remembered)
        if known is not None:
            return known
    lowered = key.lower()
    if lowered in _exempt:
        answer = False
    else:
        words = [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", key).lower()) if w]
        answer = lowered in _sensitive or any(w in _sensitive for w in words)
    if remembered is not None:
        if len(_key_cache) >= CACHE_ENTRIES:
            _key_cache.clear()
        _key_cache[remembered] = answer
    return answer


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


def redact_strings(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with every string masked by :func:`redact_text`; keys
    are kept whatever they say (for data read back by name, such as timeline event data)."""
    if isinstance(value, dict):
        return {k: redact_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_strings(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Mask credentials inside free text (see :mod:`incidentbot.ledger.redact_rules` for the rules).

    Each rule is one precompiled pass; the rarer shapes are looked for only when a cheap
    substring test says they can be there. Answers for short texts are remembered (see
    ``CACHE_ENTRIES``): the same label value masked again costs a hash."""
    if len(text) > CACHE_TEXT_MAX:
        return _redact_text(text)
    digest = hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"), digest_size=16, key=_cache_key
    ).digest()
    key = (_generation, digest)
    known = _cache.get(key)
    if known is None:
        known = _redact_text(text)
        if len(_cache) >= CACHE_ENTRIES:
            _cache.clear()
        _cache[key] = known
    return known


def _redact_text(text: str) -> str:
    text = rules.mask_text(text, is_sensitive_key)
    for fn in list(_redactors):
        text = fn(text)
    return text


def redact_url(url: str) -> str:
    """``https://user:pw@host/v3/<key>?apikey=x`` → ``https://user:***@host/v3/***?apikey=***``."""
    return rules.mask_url(url, is_sensitive_key)
