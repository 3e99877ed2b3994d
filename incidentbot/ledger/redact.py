"""Masking secrets in what the ledger stores and shows (step input, output, errors).

Steps talk to RPC endpoints whose URLs carry API keys, to Slack with tokens, to PagerDuty with
routing keys. The stored input and output are for people (``runs show``, the timeline, Slack),
so anything that looks secret is replaced by ``***`` before it is written. The hook is small on
purpose: :func:`add_sensitive_keys` and :func:`add_redactor` let other modules (runbooks) teach
it more without editing this file, and :func:`masker` builds a function that also hides a run's
own secret values wherever they appear.

What :func:`redact_text` masks, and what it deliberately leaves readable:

* **URLs** (any scheme, and schemeless hosts of known RPC providers): the password of
  ``user:pass@``, a user name given alone (``https://<token>@host``), query parameters whose
  name is sensitive (``apikey``, ``api_key``, ``key``, ``token`` …) and path segments that look
  like keys — at least 20 characters mixing letters and digits (Alchemy ``/v2/<key>``, Slack
  webhook paths), at least 32 hex digits (Infura ``/v3/<key>``, Ankr ``/<chain>/<key>``,
  QuickNode ``https://<name>.quiknode.pro/<token>/``), or any segment of 16 or more characters
  on a known RPC provider's host. A ``0x``-prefixed hex segment (a block or transaction hash,
  an address, a validator's public key) and the segment after ``tx``, ``block``, ``address``,
  ``commit``, ``tree`` or ``blob`` are identifiers and stay readable (block explorer and
  commit links).
* **Credentials with a recognisable shape**: JWTs, ``Bearer``/``Basic`` credentials, the value
  of an ``Authorization:`` header (``Authorization: token ghp_…``), Slack tokens (``xox…-``),
  AWS access key ids (``AKIA…``/``ASIA…``), GitHub tokens (``ghp_``, ``gho_``, ``ghu_``,
  ``ghs_``, ``ghr_``, ``github_pat_``) and PEM private key blocks (``-----BEGIN … PRIVATE
  KEY-----`` to its ``-----END … -----`` line, or to the end of the text when it was cut).
* **Labelled values**: after ``password``, ``passphrase``, ``secret``, ``api key``, ``access
  key``, ``secret key``, ``private key``, ``routing key`` / ``integration key`` (PagerDuty),
  ``client secret``, ``access token``/``auth token``/``bot token`` and similar compound labels
  followed by ``:`` or ``=`` (``PASSWORD=hunter2``, ``"routing_key": "R0…"``), the value is
  masked (a quoted value up to its closing quote); with only a space between (``routing key
  R0…``) the value is masked when it looks opaque (16 or more characters including a digit).
  The bare word ``token`` is not such a label: on chains it names ERC-20 tokens.
* **64 hex digits** (the size of an Ethereum private key, and also of every block hash,
  transaction hash and storage slot, which people must be able to read):

  - ``0x`` + 64 hex is masked only when **labelled as a key**: the words just before it on the
    same line end in ``key``, ``privkey``, ``private``, ``priv``, ``secret``, ``seed``, ``pk``,
    ``sk`` or ``passphrase`` (``PRIVATE_KEY=0x…``, ``--private-key 0x…``, ``"signerKey":
    "0x…"``, ``private key is 0x…``), unless the label is ``public key``, ``pubkey``,
    ``storage key`` or another non-secret kind of key (idempotency, cache, sort, partition,
    primary, foreign). ``block hash 0x…``, ``tx 0x…`` and a lone ``0x…`` stay readable.
  - bare 64 hex (no ``0x``) is masked when labelled the same way, or when it stands alone on
    its line (the whole text, or a line of only that value: what ``cat nodekey`` prints),
    except when it starts with eight zeros (a proof-of-work block hash). Bare hashes inside a
    sentence or next to a label such as ``txid``/``sha256`` stay readable; a bare
    Bitcoin-style transaction id printed alone on its line is masked (over-masking is the
    safe side).
* **BIP39 mnemonics**: a run of at least 12 words, separated only by spaces, newlines or
  commas, all from the English BIP39 word list (12, 15, 18, 21 and 24 word phrases). A run of
  another length is masked whole, unless whole lines of it make a phrase of a standard length
  (then a list word on the next line, such as ``next:``, stays). Ordinary sentences do not
  qualify: common words such as "the", "is", "of" and "to" are not in the list.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

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

_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^\s\"'<>]+)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# The credential must not be a plain lower-case word: "basic troubleshooting" is prose.
_BEARER = re.compile(
    r"(?i)\b(bearer|basic)\s+"
    r"(?-i:(?![a-z]+(?![A-Za-z0-9._~+/=-])))[A-Za-z0-9._~+/=-]{8,}"
)
_SLACK = re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}")
# A long opaque path segment in a URL is how hosted RPC providers carry the API key
# (``/v3/<key>``, ``/v2/<key>``): letters and digits mixed, at least 20 long.
_KEY_SEGMENT = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_-]{20,}$")
_HEX_SEGMENT = re.compile(r"^[0-9a-fA-F]{32,}$")
_ONCHAIN_SEGMENT = re.compile(r"^0x[0-9a-fA-F]+$")
_PROVIDER_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{16,}$")
# Path segments after these name a public identifier (explorer and repository links).
_ID_BEFORE = frozenset({"tx", "txs", "block", "blocks", "address", "commit", "commits", "tree"})
_ID_BEFORE_ALSO = frozenset({"blob", "transaction", "transactions"})
_PROVIDERS = (
    "infura.io",
    "alchemy.com",
    "alchemyapi.io",
    "quiknode.pro",
    "ankr.com",
    "blastapi.io",
    "chainstack.com",
    "getblock.io",
    "nodereal.io",
    "drpc.org",
)
_PROVIDER_HOST = "|".join(re.escape(p) for p in _PROVIDERS)
_SCHEMELESS = re.compile(
    rf"(?<![\w/.@:-])((?:[A-Za-z0-9-]+\.)*(?:{_PROVIDER_HOST})(?::\d+)?/[^\s\"'<>]*)",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?)]}"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----"
    r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
    re.DOTALL,
)
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?>(?:(bearer|basic|token|bot|digest|apikey|api-key|key|sso-key)\s+)?)"
    r"(?!\*\*\*)([^\s\"',;]+)"
)
_AWS = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b")
_GITHUB = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})\b")
_LABELS = (
    r"password|passwd|passphrase|secret|client[_ -]?secret|"
    r"api[_ -]?key|apikey|access[_ -]?key|secret[_ -]?key|private[_ -]?key|privkey|"
    r"routing[_ -]?key|integration[_ -]?key|service[_ -]?key|signing[_ -]?key|"
    r"auth[_ -]?token|access[_ -]?token|api[_ -]?token|bot[_ -]?token|refresh[_ -]?token|"
    r"app[_ -]?token|session[_ -]?token|webhook[_ -]?secret"
)
# ``PASSWORD=hunter2``, ``"routing_key": "R0…"``, ``api key: abc``
# A quoted value is masked to its closing quote ("correct horse battery"), a bare one to the
# next space or punctuation.
_LABELLED = re.compile(
    rf"(?i)(?<![A-Za-z0-9])((?:[A-Za-z0-9]+[_.-]){{0,4}}(?:{_LABELS})[\"']?\s*[:=]\s*)"
    r"(?:\"(?!\*\*\*\")([^\"\n]+)\"|'(?!\*\*\*')([^'\n]+)'|(?![\"']|\*\*\*)([^\s\"',;&<>)\]}]+))"
)
# ``routing key R0123…``: only a space between, so the value must look opaque.
_LABELLED_LOOSE = re.compile(
    rf"(?i)(?<![A-Za-z0-9])((?:{_LABELS})\s+(?:is\s+)?)"
    r"(?=[A-Za-z0-9_+/=.-]*[0-9])([A-Za-z0-9_+/=.-]{16,})"
)
_HEX64 = re.compile(r"(?<![0-9A-Za-z_])(0x)?[0-9a-fA-F]{64}(?![0-9A-Za-z_])")
_LABEL_TAIL = re.compile(
    r"([A-Za-z][A-Za-z0-9]*(?:[ _.-]+[A-Za-z][A-Za-z0-9]*)?)"
    r"[\"']?\s*(?:[:=]>?|\bis\b)?\s*[\"']?\s*$"
)
_KEY_WORDS = frozenset(
    {"key", "privkey", "private", "priv", "secret", "seed", "pk", "sk", "passphrase", "nodekey"}
)
_NOT_SECRET_KEY = frozenset(
    {"public", "pub", "storage", "idempotency", "cache", "sort", "partition", "primary", "foreign"}
)
_WORD = re.compile(r"[A-Za-z]+")
_WORD_GAP = re.compile(r"^[ \t\r\n,]+$")
MNEMONIC_MIN_WORDS = 12
MNEMONIC_LENGTHS = frozenset({12, 15, 18, 21, 24})


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
    """Mask credentials inside free text (see the module documentation for the rules)."""
    text = _PEM.sub(
        lambda m: f"-----BEGIN {m.group(1)}----- {MASK} -----END {m.group(1)}-----", text
    )
    text = _URL.sub(lambda m: _url_in_text(m.group(1)), text)
    text = _SCHEMELESS.sub(lambda m: _url_in_text(m.group(1), schemeless=True), text)
    text = _JWT.sub(MASK, text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{_scheme(m.group(2))}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _SLACK.sub(MASK, text)
    text = _AWS.sub(MASK, text)
    text = _GITHUB.sub(MASK, text)
    text = _LABELLED.sub(_labelled, text)
    text = _LABELLED_LOOSE.sub(lambda m: m.group(1) + MASK, text)
    source = text
    text = _HEX64.sub(lambda m: _hex64(m, source), source)
    text = _mask_mnemonics(text)
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
    host = (parts.hostname or "").lower()
    provider = any(host == p or host.endswith("." + p) for p in _PROVIDERS)
    segments = parts.path.split("/")
    masked: list[str] = []
    for index, seg in enumerate(segments):
        before = segments[index - 1].lower() if index else ""
        masked.append(MASK if _is_key_segment(seg, before, provider) else seg)
    path = "/".join(masked)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if is_sensitive_key(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def _url_in_text(url: str, *, schemeless: bool = False) -> str:
    # Punctuation that ends a sentence is not part of the URL ("…/v3/<key>, then").
    core = url.rstrip(_TRAILING)
    tail = url[len(core) :]
    if schemeless:
        return redact_url("https://" + core)[len("https://") :] + tail
    return redact_url(core) + tail


def _is_key_segment(segment: str, before: str, provider: bool) -> bool:
    if not segment or segment == MASK or _ONCHAIN_SEGMENT.match(segment):
        return False
    if before in _ID_BEFORE or before in _ID_BEFORE_ALSO:
        return False
    if _KEY_SEGMENT.match(segment) or _HEX_SEGMENT.match(segment):
        return True
    return provider and bool(_PROVIDER_SEGMENT.match(segment))


def _labelled(match: re.Match[str]) -> str:
    if match.group(2) is not None:
        return f'{match.group(1)}"{MASK}"'
    if match.group(3) is not None:
        return f"{match.group(1)}'{MASK}'"
    return match.group(1) + MASK


def _scheme(word: str | None) -> str:
    return f"{word} " if word else ""


def _label_words(label: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", label).lower()) if w]


def _labelled_as_key(text: str, start: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    prefix = text[max(line_start, start - 64) : start]
    match = _LABEL_TAIL.search(prefix)
    if match is None:
        return False
    words = _label_words(match.group(1))
    if not words or words[-1] not in _KEY_WORDS:
        return False
    return not (len(words) > 1 and words[-2] in _NOT_SECRET_KEY) and words[-1] != "pubkey"


def _standalone(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    return not text[line_start:start].strip() and not text[end:line_end].strip()


def _hex64(match: re.Match[str], text: str) -> str:
    value = match.group(0)
    if _labelled_as_key(text, match.start()):
        return MASK
    bare = match.group(1) is None
    if bare and not value.startswith("00000000") and _standalone(text, *match.span()):
        return MASK
    return value


@functools.cache
def bip39_words() -> frozenset[str]:
    """The English BIP39 word list (loaded once, on first use)."""
    from mnemonic import Mnemonic

    return frozenset(Mnemonic("english").wordlist)


def _phrase_in(run: list[re.Match[str]], text: str) -> tuple[int, int]:
    """The first and last word of the phrase in a run of list words: the whole run, unless
    its lines can be split so that whole lines make a phrase of a standard length (then a
    list word on the next line, such as "next:", is not part of it)."""
    if len(run) in MNEMONIC_LENGTHS:
        return 0, len(run) - 1
    starts = [0] + [
        i for i in range(1, len(run)) if "\n" in text[run[i - 1].end() : run[i].start()]
    ]
    bounds = [*starts, len(run)]
    best: tuple[int, int] | None = None
    for a in range(len(starts)):
        for b in range(a + 1, len(bounds)):
            count = bounds[b] - bounds[a]
            if count > max(MNEMONIC_LENGTHS):
                break
            if count in MNEMONIC_LENGTHS and (best is None or count > best[1] - best[0] + 1):
                best = (bounds[a], bounds[b] - 1)
    return best if best is not None else (0, len(run) - 1)


def _mask_mnemonics(text: str) -> str:
    if text.count(" ") + text.count("\n") + text.count(",") < MNEMONIC_MIN_WORDS - 1:
        return text
    words = bip39_words()
    spans: list[tuple[int, int]] = []
    run: list[re.Match[str]] = []

    def close() -> None:
        if len(run) >= MNEMONIC_MIN_WORDS:
            first, last = _phrase_in(run, text)
            spans.append((run[first].start(), run[last].end()))
        run.clear()

    for match in _WORD.finditer(text):
        if match.group(0).lower() not in words:
            close()
            continue
        if run and not _WORD_GAP.match(text[run[-1].end() : match.start()]):
            close()
        run.append(match)
    close()
    for start, end in reversed(spans):
        text = text[:start] + MASK + text[end:]
    return text


# -- a run's own secrets -----------------------------------------------------------------------

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
