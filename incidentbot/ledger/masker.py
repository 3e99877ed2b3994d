"""A run's own secrets: a fixed set of values (its secret params) masked in the forms they take
in URLs, query strings and JSON, on top of everything :func:`redact_text` masks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from incidentbot.ledger.redact import MASK, redact_text

MIN_SECRET_LENGTH = 4


class Masker:
    """Masks a fixed set of secret values (a run's secret params), in the forms they take in
    URLs, query strings and JSON, and then everything :func:`redact_text` masks.

    Values shorter than :data:`MIN_SECRET_LENGTH` characters are not masked as exact strings:
    they would hide ordinary text ("1", "on") and are too short to be credentials."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
                continue
            for part in (value, *_secret_parts(value)):
                forms.update({part, quote(part, safe=""), quote_plus(part)})
                forms.add(json.dumps(part)[1:-1])
        self.values = frozenset(v for v in forms if len(v) >= MIN_SECRET_LENGTH)
        ordered = sorted(self.values, key=lambda v: (-len(v), v))
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return redact_text(text)

    def __repr__(self) -> str:  # never show the values themselves
        return f"Masker({len(self.values)} values)"


_OPAQUE = re.compile(r"^(?=.*[0-9])[A-Za-z0-9_~.+/=-]{12,}$")


def _secret_parts(value: str) -> list[str]:
    """The parts of a secret URL that are secrets on their own: a provider echoing the key
    from ``https://host/v3/<key>`` back in an error must not reveal it either. Parts are the
    password, opaque path segments and query values (digits and letters, 12+ long)."""
    if "://" not in value:
        return []
    try:
        url = urlsplit(value.strip())
    except ValueError:
        return []
    parts = [url.password] if url.password else []
    parts += [seg for seg in url.path.split("/") if _OPAQUE.match(seg)]
    parts += [v for _, v in parse_qsl(url.query) if _OPAQUE.match(v)]
    return [p for p in parts if p]


def masker(values: Iterable[str]) -> Callable[[str], str]:
    """A function that hides ``values`` (and anything secret-shaped) in text."""
    return Masker(values)
