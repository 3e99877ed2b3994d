"""Key material in free text: hex keys, routing keys, AWS secret keys, keystores, mnemonics.

These are the shapes :mod:`incidentbot.ledger.redact` cannot judge by their look alone: 64 hex
digits are a private key or a transaction hash, 32 hex digits a PagerDuty routing key or a
trace id, 40 base64 characters an AWS secret key or nothing. So each is judged by the words
just before it on its line (its label); the rules are in ``redact``'s module documentation.
"""

from __future__ import annotations

import functools
import re

MASK = "***"

# A hex value of a key's size standing alone (not part of a longer word, hash or URL path).
_HEX = re.compile(r"(?<![0-9A-Za-z_/])(0x)?([0-9a-fA-F]{64}|[0-9a-fA-F]{32})(?![0-9A-Za-z_])")
# The last one or two words of a label, matched on the reversed text so that it is one
# anchored attempt (a search for "the end of the line" would retry at every position).
_LABEL_REVERSED = re.compile(r"([A-Za-z0-9]*[A-Za-z])(?:[ _.-]+([A-Za-z0-9]*[A-Za-z]))?")
_BEFORE_VALUE = " \t\"'[({"
# What separates the values of a list (``blocks 0xaa…, 0xbb…``) and what a value in it is made
# of: earlier values and plain numbers (``block 19000000 0x…``) are skipped to find the label.
_SEPARATORS = " \t\r,;\"')]"
_VALUE_CHARS = "0123456789abcdefABCDEFx*"
# How far before and after a value its label and its line are looked for: bounded, so a
# long line costs no more per value than a short one.
_REACH = 160
_JOINERS = frozenset("-:.@#")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORDS = re.compile(r"[a-z0-9]+")
KEY_WORDS = frozenset(
    {"key", "keys", "privkey", "private", "priv", "secret", "seed", "pk", "sk", "passphrase"}
    | {"nodekey", "privatekey", "secretkey", "signingkey", "keystore"}
)
# Kinds of key that are not secrets (``public key``, ``storage key``).
NOT_SECRET_KEY = frozenset(
    {"public", "pub", "storage", "idempotency", "cache", "sort", "partition", "primary", "foreign"}
    | {"pubkey", "dedup", "dedupe", "group", "lookup", "index"}
)
# Labels that name a public identifier: a hex value after them stays readable.
ID_WORDS = frozenset(
    {"hash", "hashes", "blockhash", "txhash", "mixhash", "tx", "txs", "txn", "txid", "txids"}
    | {"transaction", "transactions", "block", "blocks", "root", "roots", "stateroot", "parent"}
    | {"digest", "sha256", "sha3", "sha", "keccak", "keccak256", "checksum", "md5", "commit"}
    | {"topic", "topics", "address", "slot", "uncles", "receipt", "randao", "head", "header"}
    | {"id", "ids", "uuid", "trace", "span", "request", "fingerprint", "etag", "group", "run"}
    | {"pubkey", "signature", "sig", "codehash"}
)
# ``sha256sum`` output: the digest, two spaces (or a space and ``*``) and the file name.
_SUMS_LINE = re.compile(r" (?: |\*)\S")
# At least eight zeros in a row: a padded number or address, a proof-of-work hash. A random key
# has them with a chance of about one in a hundred million.
_ZEROS = "00000000"


def _words(label: str) -> list[str]:
    return _WORDS.findall(_CAMEL.sub("_", label).lower())


def _line(text: str, start: int, end: int) -> tuple[int, int]:
    """The bounds of the line around ``text[start:end]``, looked for at most ``_REACH``
    characters away (a longer line is cut there)."""
    low = max(0, start - _REACH)
    line_start = text.rfind("\n", low, start) + 1 or low
    line_end = text.find("\n", end, end + _REACH)
    return line_start, (min(len(text), end + _REACH) if line_end < 0 else line_end)


def _is_value(token: str) -> bool:
    if token == MASK:
        return True
    if token.startswith("0x"):
        return all(c in _HEX_DIGITS for c in token[2:])
    return "x" not in token and "*" not in token and any(c.isdigit() for c in token)


def label_words(text: str, start: int) -> list[str]:
    """The words of the label just before ``text[start]`` on its line (``[]`` when none)."""
    line_start, _ = _line(text, start, start)
    rest = text[line_start:start]
    while True:
        body = rest.rstrip(_SEPARATORS)
        if len(body) == len(rest):
            break
        token = body[len(body.rstrip(_VALUE_CHARS)) :]
        rest_before = body[: len(body) - len(token)]
        if not token or not _is_value(token) or rest_before[-1:].isalnum():
            break  # not a value, or the end of a word such as ``md5``
        rest = rest_before
    return _label(rest[-80:])


def _label(text: str) -> list[str]:
    """``"signerKey": "`` → signer, key; ``private key is `` → private, key."""
    text = text.rstrip(_BEFORE_VALUE)
    if text.endswith("=>"):
        text = text[:-2]
    elif text.endswith((":", "=")):
        text = text[:-1]
    elif text.lower().endswith((" is", " was")):
        text = text[: text.rindex(" ")]
    match = _LABEL_REVERSED.match(text.rstrip(" \t\"'")[::-1])
    if match is None:
        return []
    last, before = match.group(1)[::-1], (match.group(2) or "")[::-1]
    return _words(f"{before} {last}")


def labelled_as_key(words: list[str]) -> bool:
    if not words or words[-1] not in KEY_WORDS:
        return False
    return not (len(words) > 1 and words[-2] in NOT_SECRET_KEY)


def labelled_as_identifier(words: list[str]) -> bool:
    """``tx``, ``block hash``, ``blockHash``, ``sha256``, ``public key``, ``storage key``…"""
    if not words:
        return False
    if words[-1] in ID_WORDS or "".join(words[-2:]) in ID_WORDS:
        return True
    return words[-1] in KEY_WORDS and len(words) > 1 and words[-2] in NOT_SECRET_KEY


def _standalone(text: str, start: int, end: int) -> bool:
    """Alone on its line, but for quotes, brackets and commas (a pretty-printed JSON list)."""
    line_start, line_end = _line(text, start, end)
    before, after = text[line_start:start], text[end:line_end]
    return not before.strip(" \t\r\"'[](){},") and not after.strip(" \t\r\"'[](){},;")


def _hex(match: re.Match[str], text: str) -> str:
    value = match.group(0)
    prefixed = match.group(1) is not None
    digits = match.group(2)
    words = label_words(text, match.start())
    if labelled_as_key(words):
        return MASK
    if labelled_as_identifier(words):
        return value
    if len(digits) == 32:
        # 16 bytes: a PagerDuty routing key, or a trace id, an MD5 sum or a dashless UUID.
        # Only a word of its own: ``runbook-<hex>`` and ``run:1:<hex>`` are our own keys.
        joined = match.start() > 0 and text[match.start() - 1] in _JOINERS
        return value if prefixed or joined or digits.isdigit() or digits.isalpha() else MASK
    if _ZEROS in digits:
        return value
    if _standalone(text, *match.span()):
        # ``cast`` prints a transaction hash alone; ``cat nodekey`` prints a key alone.
        return value if prefixed else MASK
    at_line_start = match.start() == 0 or text[match.start() - 1] == "\n"
    if not prefixed and at_line_start and _SUMS_LINE.match(text, match.end()):
        return value
    return MASK


def mask_hex(text: str) -> str:
    """Mask 64 hex digits (a private key's size) and 32 (a routing key's) unless their label
    says they are an identifier (see the module documentation of ``redact``)."""
    return _HEX.sub(lambda m: _hex(m, text), text)


# -- AWS secret access keys --------------------------------------------------------------------

_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_CONTEXT = re.compile(r"(?i)aws|secret|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_HEXISH = re.compile(r"^[0-9a-fA-F]+$")


def _aws_secret(match: re.Match[str], text: str) -> str:
    value = match.group(0)
    if _HEXISH.match(value) or not (
        any(c.isupper() for c in value) and any(c.islower() for c in value)
    ):
        return value  # a commit, a checksummed address, a word
    low = max(0, match.start() - 120)
    before = text[text.rfind("\n", low, match.start()) + 1 or low : match.start()]
    return MASK if _AWS_CONTEXT.search(before) else value


def mask_aws_secrets(text: str) -> str:
    """40 base64 characters after an AWS access key id, or on a line that says AWS or
    secret before them (``AKIA…,wJalr…``, ``aws secret wJalr…``)."""
    return _AWS_SECRET.sub(lambda m: _aws_secret(m, text), text)


# -- Ethereum keystores ------------------------------------------------------------------------

# The ``crypto`` object of a keystore (one level of nesting: cipherparams, kdfparams) and
# the cipher text and MAC on their own (a keystore cut off by truncation).
_KEYSTORE_OBJECT = re.compile(
    r"(?i)(\"(?:crypto|kdfparams|cipherparams)\"\s*:\s*)\{(?:[^{}]|\{[^{}]*(?:\}|\Z))*(?:\}|\Z)"
)
_KEYSTORE_VALUE = re.compile(r"(?i)(\"(?:ciphertext|mac|salt|iv)\"\s*:\s*)\"[^\"\n]*\"?")


def mask_keystore(text: str) -> str:
    lowered = text.lower()
    if "ciphertext" not in lowered and "kdfparams" not in lowered and '"crypto"' not in lowered:
        return text
    text = _KEYSTORE_OBJECT.sub(lambda m: f'{m.group(1)}"{MASK}"', text)
    return _KEYSTORE_VALUE.sub(lambda m: f'{m.group(1)}"{MASK}"', text)


# -- BIP39 mnemonics ---------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]+")
_WORD_GAP = re.compile(r"^[ \t\r\n,]+$")
MNEMONIC_MIN_WORDS = 12
MNEMONIC_LENGTHS = frozenset({12, 15, 18, 21, 24})
MNEMONIC_SLACK = 6  # list words after a phrase (``next:``) that a run may carry


@functools.cache
def bip39_words() -> frozenset[str]:
    """The English BIP39 word list (loaded once, on first use)."""
    from mnemonic import Mnemonic

    return frozenset(Mnemonic("english").wordlist)


def _phrase_in(run: list[re.Match[str]], text: str) -> tuple[int, int]:
    """The first and last word of the phrase in a run of list words: the whole run, unless
    its lines can be split so that whole lines make a phrase of a standard length (then a
    list word on the next line, such as "next:", is not part of it)."""
    if len(run) in MNEMONIC_LENGTHS or len(run) > max(MNEMONIC_LENGTHS) + MNEMONIC_SLACK:
        # A run much longer than a phrase is no phrase and a list word: it is all secret
        # (two phrases written one word a line), and finding lines in it would cost more.
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


def _phrases(run: list[re.Match[str]], text: str, spans: list[tuple[int, int]]) -> None:
    """Every phrase in a run of list words: the one :func:`_phrase_in` finds, then those in
    what is left before and after it (two phrases on adjacent lines are both secret)."""
    if len(run) < MNEMONIC_MIN_WORDS:
        return
    first, last = _phrase_in(run, text)
    spans.append((run[first].start(), run[last].end()))
    _phrases(run[:first], text, spans)
    _phrases(run[last + 1 :], text, spans)


def mask_mnemonics(text: str) -> str:
    """Mask runs of BIP39 list words long enough to be a recovery phrase."""
    if text.count(" ") + text.count("\n") + text.count(",") < MNEMONIC_MIN_WORDS - 1:
        return text
    words = bip39_words()
    spans: list[tuple[int, int]] = []
    run: list[re.Match[str]] = []

    def close() -> None:
        _phrases(run, text, spans)
        run.clear()

    for match in _WORD.finditer(text):
        if match.group(0).lower() not in words:
            close()
            continue
        if run and not _WORD_GAP.match(text[run[-1].end() : match.start()]):
            close()
        run.append(match)
    close()
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + MASK + text[end:]
    return text
