"""The rules that find secrets in text: URLs and credentials with a recognisable shape.

Pure functions of the text, without state; :mod:`incidentbot.ledger.redact` is the entry point
(the registry of sensitive keys and extra redactors, the cache of answers).

What :func:`~incidentbot.ledger.redact.redact_text` masks, and what it deliberately leaves
readable:

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
  of an ``Authorization:`` header (``Authorization: token ghp_…``), Slack tokens (``xox…-``,
  app-level ``xapp-…``, refresh ``xoxe.xoxp-…``), AWS access key ids (``AKIA…``/``ASIA…``),
  GitHub tokens (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``),
  PagerDuty user API tokens (``u+…``) and Event Orchestration routing keys (``R0`` and 30
  capitals or digits), and PEM private key blocks (``-----BEGIN … PRIVATE KEY-----`` to its
  ``-----END … -----`` line, or to the end of the text when it was cut).
* **Labelled values**: after ``password``, ``passphrase``, ``secret``, ``api key``, ``access
  key``, ``secret key``, ``secret access key`` (``"SecretAccessKey": …``), ``private key``,
  ``routing key`` / ``integration key`` / ``pagerduty token`` / ``pd key`` (PagerDuty),
  ``client secret``, ``access token``/``auth token``/``bot token``, ``ciphertext`` and similar
  compound labels followed by ``:`` or ``=`` (``PASSWORD=hunter2``, ``"routing_key":
  "R0…"``), the value is masked (a quoted value up to its closing quote); with only a space
  between (``routing key R0…``) the value is masked when it looks opaque (16 or more
  characters including a digit). A label ending in ``token`` (``PAGERDUTY_TOKEN=``,
  ``"token": …``, PagerDuty's ``Token token=…``) masks its value only when the value looks
  opaque too and is not an address: on chains the word names ERC-20 tokens (``token: USDC``,
  ``token=0xA0b8…``).
* **AWS secret access keys**: 40 characters of base64 (upper and lower case mixed, not all
  hex) after an AWS access key id on the same line (``AKIA…:wJalr…``, a credentials CSV
  line) or after a mention of ``aws`` or ``secret`` within 120 characters before it.
* **Ethereum keystores**: the ``crypto`` object (``ciphertext``, ``cipherparams``,
  ``kdfparams`` with the salt, ``mac``) of keystore JSON, even cut off by truncation.
* **Hex keys: 64 hex digits** (an Ethereum private key's size, and also that of every block
  hash, transaction hash, state root and log topic, which people must be able to read) and
  **32 hex digits** (a PagerDuty integration/routing key's size, and that of trace ids and MD5
  sums), with or without ``0x``, judged by their label — the words just before the value on
  its line, skipping earlier values of a list and plain numbers (``blocks 0xa…, 0xb…``,
  ``block 19000000 0x…``):

  - **labelled as a key** — the label ends in ``key``, ``privkey``, ``private``, ``priv``,
    ``secret``, ``seed``, ``pk``, ``sk``, ``passphrase``, ``keystore`` (``PRIVATE_KEY=0x…``,
    ``--private-key 0x…``, ``"signerKey": "0x…"``, ``private key is 0x…``): masked;
  - **labelled as an identifier** — ``hash`` (``blockHash``, ``txhash``), ``tx``, ``txid``,
    ``transaction``, ``block``, ``root`` (``stateRoot``), ``topic(s)``, ``address``,
    ``slot``, ``digest``, ``sha256``, ``checksum``, ``md5``, ``commit``, ``id``, ``trace``,
    ``span``, ``request``, ``group``, ``fingerprint`` and the like, or a non-secret kind of key
    (``public key``, ``pubkey``, ``storage key``, idempotency, cache, sort, partition,
    primary, foreign): readable;
  - otherwise 32 hex digits are masked (an unlabelled routing key), unless ``0x``-prefixed,
    all digits, or joined to a word before them by ``-``, ``:``, ``.``, ``@`` or ``#`` (keys
    such as ``runbook-<hex>``); 64 hex digits containing eight zeros in a row (a padded
    address or number, a proof-of-work hash) stay readable; a ``0x`` value alone on its line
    (what ``cast`` prints for a transaction, a JSON list item) stays readable, a bare one is
    masked (what ``cat nodekey`` prints); the digest that starts a ``sha256sum`` line stays
    readable; any other 64 hex digits — in running text (``leaked 0x…``), after a label that
    names neither a key nor an identifier (``signer: …``, ``"result": "0x…"``) — are masked:
    over-masking a hash is the safe side of hiding a key.
* **BIP39 mnemonics**: a run of at least 12 words, separated only by spaces, newlines or
  commas, all from the English BIP39 word list (12, 15, 18, 21 and 24 word phrases). A run of
  another length is masked whole, unless whole lines of it make a phrase of a standard length
  (then a list word on the next line, such as ``next:``, stays). Ordinary sentences do not
  qualify: common words such as "the", "is", "of" and "to" are not in the list.
"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from incidentbot.ledger import redact_keys as keys
from incidentbot.ledger.redact_keys import MASK

_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^\s\"'<>]+)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# The credential must not be a plain lower-case word: "basic troubleshooting" is prose.
_BEARER = re.compile(
    r"(?i)\b(bearer|basic)\s+"
    r"(?-i:(?![a-z]+(?![A-Za-z0-9._~+/=-])))[A-Za-z0-9._~+/=-]{8,}"
)
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
# Credentials whose shape alone gives them away, in one pass: Slack bot/user/app tokens
# (``xoxb-``, ``xoxp-``, ``xapp-``, refresh ``xoxe.xoxp-``), AWS access key ids, GitHub
# tokens, PagerDuty user API tokens (``u+``) and Event Orchestration routing keys (``R0``).
_TOKENS = re.compile(
    r"\b(?:xox[a-z](?:\.xox[a-z])?-[A-Za-z0-9-]{8,}|xapp-[A-Za-z0-9-]{8,}"
    r"|(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"
    r"|gh[pousr]_[A-Za-z0-9]{30,}\b|github_pat_[A-Za-z0-9_]{22,}\b|R0[0-9A-Z]{30}\b)"
    r"|(?<![A-Za-z0-9+])u\+[A-Za-z0-9_+-]{16,}"
)
_LABELS = (
    r"password|passwd|passphrase|secret|client[_ -]?secret|"
    r"api[_ -]?key|apikey|access[_ -]?key|secret[_ -]?key|private[_ -]?key|privkey|"
    r"routing[_ -]?key|integration[_ -]?key|service[_ -]?key|signing[_ -]?key|"
    r"auth[_ -]?token|access[_ -]?token|api[_ -]?token|bot[_ -]?token|refresh[_ -]?token|"
    r"app[_ -]?token|session[_ -]?token|webhook[_ -]?secret|secret[_ -]?access[_ -]?key|"
    r"(?:pagerduty|pd)[_ -]?(?:api[_ -]?|user[_ -]?)?(?:token|key)|ciphertext"
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
# ``PAGERDUTY_TOKEN=y_NbAk…``, ``Token token=…`` (PagerDuty's REST scheme): ``token`` alone
# also names ERC-20 tokens (``token: USDC``, ``token=0xA0b8…``), so the value must look opaque:
# 16 or more characters, a digit among them, not an address.
_TOKEN_LABELLED = re.compile(
    r"(?i)(?<![A-Za-z0-9])((?:[A-Za-z0-9]+[_.-]){0,4}token[\"']?\s*[:=]\s*[\"']?)"
    r"([A-Za-z0-9_+/=.-]{16,})"
)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def mask_text(text: str, sensitive: Callable[[str], bool]) -> str:
    """Every built-in rule over ``text``, in order; ``sensitive`` says which query parameter
    names are secret (the registry of sensitive keys, which callers may extend)."""
    lowered = text.lower()
    if "-----begin" in lowered:
        text = _PEM.sub(
            lambda m: f"-----BEGIN {m.group(1)}----- {MASK} -----END {m.group(1)}-----", text
        )
    text = keys.mask_keystore(text)
    if "://" in text:
        text = _URL.sub(lambda m: _url_in_text(m.group(1), sensitive), text)
    if "/" in text:
        text = _SCHEMELESS.sub(lambda m: _url_in_text(m.group(1), sensitive, schemeless=True), text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "authorization" in lowered:
        text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{_scheme(m.group(2))}{MASK}", text)
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    if "aws" in lowered or "secret" in lowered or "akia" in lowered or "asia" in lowered:
        text = keys.mask_aws_secrets(text)
    text = _TOKENS.sub(MASK, text)
    text = _LABELLED.sub(_labelled, text)
    if "token" in lowered:
        text = _TOKEN_LABELLED.sub(_token_labelled, text)
    text = _LABELLED_LOOSE.sub(lambda m: m.group(1) + MASK, text)
    text = keys.mask_hex(text)
    return keys.mask_mnemonics(text)


def mask_url(url: str, sensitive: Callable[[str], bool]) -> str:
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
    path = parts.path
    if parts.netloc:  # without a host (sqlite:////var/..., file:///...) the path is a local file
        segments = path.split("/")
        masked: list[str] = []
        for index, seg in enumerate(segments):
            before = segments[index - 1].lower() if index else ""
            masked.append(MASK if _is_key_segment(seg, before, provider) else seg)
        path = "/".join(masked)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if sensitive(k) else v) for k, v in pairs], safe="*")
    if (netloc, path, query) == (parts.netloc, parts.path, parts.query):
        return url  # nothing to mask: as written (re-joining would turn sqlite://// into //)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def _url_in_text(url: str, sensitive: Callable[[str], bool], *, schemeless: bool = False) -> str:
    # Punctuation that ends a sentence is not part of the URL ("…/v3/<key>, then").
    core = url.rstrip(_TRAILING)
    tail = url[len(core) :]
    if schemeless:
        return mask_url("https://" + core, sensitive)[len("https://") :] + tail
    return mask_url(core, sensitive) + tail


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


def _token_labelled(match: re.Match[str]) -> str:
    value = match.group(2)
    if _ADDRESS.fullmatch(value) or not any(c.isdigit() for c in value):
        return match.group(0)
    return match.group(1) + MASK


def _scheme(word: str | None) -> str:
    return f"{word} " if word else ""
