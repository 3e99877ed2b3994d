"""Secret shapes: every realistic secret in the shared corpus is masked, every look-alike
(hashes, addresses, key-free URLs, dates, prose) stays exactly as written."""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

import pytest

from incidentbot import ledger
from incidentbot.ledger.masker import Masker, masker
from incidentbot.ledger.redact import MASK, bip39_words, redact_text
from tests.secret_corpus import (
    BARE_KEY_2 as BARE,
)
from tests.secret_corpus import (
    BLOCK_HASH,
    HOSTILE,
    INFURA_KEY,
    LOOKALIKES,
    MNEMONIC_12,
    PRIVATE_KEY_1,
    SECRETS,
    TX_HASH,
)


@pytest.mark.parametrize(("what", "text", "secret"), SECRETS, ids=[s[0] for s in SECRETS])
def test_each_secret_is_masked(what: str, text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out, f"{what}: {out!r}"
    assert MASK in out
    assert redact_text(out) == out, "masking twice must change nothing more"


@pytest.mark.parametrize(("what", "text"), LOOKALIKES, ids=[s[0] for s in LOOKALIKES])
def test_each_lookalike_stays_readable(what: str, text: str) -> None:
    assert redact_text(text) == text


def test_the_corpus_is_realistic_and_consistent() -> None:
    assert len(SECRETS) >= 40 and len(LOOKALIKES) >= 25
    assert len({s[0] for s in SECRETS}) == len(SECRETS)
    for what, text, secret in SECRETS:
        assert secret in text, f"{what}: the secret is not in its text"
    words = bip39_words()
    assert len(words) == 2048
    assert all(w in words for w in MNEMONIC_12.split())


def test_what_is_kept_around_a_masked_secret_stays_readable() -> None:
    cases = {
        f"eth_call to https://mainnet.infura.io/v3/{INFURA_KEY} failed, retrying": (
            "eth_call to https://mainnet.infura.io/v3/*** failed, retrying"
        ),
        f"PRIVATE_KEY={PRIVATE_KEY_1} for block {BLOCK_HASH}": (
            f"PRIVATE_KEY=*** for block {BLOCK_HASH}"
        ),
        f"mnemonic: {MNEMONIC_12}\nnext: resync rpc-2": "mnemonic: ***\nnext: resync rpc-2",
        "curl -H 'Authorization: Bearer 7f3kQ9zL2mX8pW4vN6tB1cR5' https://lb.example/drain": (
            "curl -H 'Authorization: Bearer ***' https://lb.example/drain"
        ),
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\nkey loaded": (
            "-----BEGIN PRIVATE KEY----- *** -----END PRIVATE KEY-----\nkey loaded"
        ),
        f"tx {TX_HASH} signed with key {PRIVATE_KEY_1[2:]}": f"tx {TX_HASH} signed with key ***",
    }
    for text, expected in cases.items():
        assert redact_text(text) == expected


def test_structured_values_mask_secret_keys_and_secret_shapes() -> None:
    payload = json.loads(
        json.dumps(
            {
                "rpc_url": f"https://mainnet.infura.io/v3/{INFURA_KEY}",
                "signer": {"privateKey": PRIVATE_KEY_1, "address": "0x00926c40438F9f8F66"},
                "routing_key": "R02ABCDEFGHIJKLMNOPQRSTUVWXYZ123",
                "note": f"block {BLOCK_HASH} finalized",
                "headers": {"Authorization": "Bearer 7f3kQ9zL2mX8pW4vN6tB1cR5", "Accept": "json"},
                "chain_id": 1,
            }
        )
    )
    assert ledger.redact(payload) == {
        "rpc_url": "https://mainnet.infura.io/v3/***",
        "signer": {"privateKey": MASK, "address": "0x00926c40438F9f8F66"},
        "routing_key": MASK,
        "note": f"block {BLOCK_HASH} finalized",
        "headers": {"Authorization": MASK, "Accept": "json"},
        "chain_id": 1,
    }


def test_masker_hides_a_runs_own_secret_values_in_every_form() -> None:
    secret = "p@ss word/+&x"
    mask = masker([secret, "ab", ""])
    text = (
        f"login {secret}; url https://lb.example/login?pw={quote(secret, safe='')}; "
        f"form pw=p%40ss+word%2F%2B%26x; json {json.dumps({'pw': secret})}"
    )
    out = mask(text)
    assert "p@ss" not in out and "p%40ss" not in out
    assert out == 'login ***; url https://lb.example/login?pw=***; form pw=***; json {"pw": "***"}'
    # Short values would hide ordinary text; they are not masked as exact strings.
    assert mask("grab the lab logs") == "grab the lab logs"
    # Secret shapes are masked as well.
    assert mask(f"https://mainnet.infura.io/v3/{INFURA_KEY}") == "https://mainnet.infura.io/v3/***"
    assert isinstance(mask, Masker) and "p@ss" not in repr(mask)


def test_masker_prefers_the_longest_value_and_needs_no_values() -> None:
    mask = masker(["rpc-admin", "rpc-admin-password-2"])
    assert mask("use rpc-admin-password-2 as rpc-admin") == "use *** as ***"
    assert masker([])("nothing secret here") == "nothing secret here"


def test_redaction_is_safe_from_many_threads() -> None:
    texts = [text for _, text, _ in SECRETS] + [text for _, text in LOOKALIKES]
    expected = [redact_text(t) for t in texts]
    failures: list[str] = []

    def worker() -> None:
        for _ in range(20):
            for text, want in zip(texts, expected, strict=True):
                if redact_text(text) != want:
                    failures.append(text)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_large_and_hostile_text_is_masked_whole() -> None:
    # What each of these costs is printed by bench/redaction.py (a test asserts no times);
    # here: they finish, and come out masked where they are secret.
    for text in HOSTILE:
        assert len(redact_text(text)) <= len(text), text[:20]
    # A long run of list words is one mnemonic-shaped secret, however it is laid out.
    assert redact_text(" ".join(["abandon"] * 20000)) == MASK
    assert redact_text("\n".join(["abandon"] * 20000)) == MASK
    # Hex keys on one long line are each judged by their own label.
    line = ", ".join([f"key {BARE}", f"tx {TX_HASH}"] * 2000)
    assert redact_text(line) == ", ".join(["key ***", f"tx {TX_HASH}"] * 2000)
