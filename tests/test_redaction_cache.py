"""Masking remembers its answers (alert storms repeat the same values thousands of times):
the remembered answer is always the one masking would give now, and the memory never holds
the text that came in."""

from __future__ import annotations

import importlib

from incidentbot.alerts.payload import parse
from incidentbot.typed_text import clean_tree
from tests.secret_corpus import LOOKALIKES, SECRETS
from tests.test_alerts_support import alert, notification

# The module (``incidentbot.ledger.redact`` is also the name of a function the package exports).
redaction = importlib.import_module("incidentbot.ledger.redact")


def test_a_remembered_answer_is_the_answer_masking_gives():
    texts = [text for _, text, _ in SECRETS] + [text for _, text in LOOKALIKES]
    first = [redaction.redact_text(t) for t in texts]
    again = [redaction.redact_text(t) for t in texts]  # from memory where short enough
    assert again == first == [redaction._redact_text(t) for t in texts]


def test_the_memory_never_holds_the_secret_it_masked():
    secret = "hunter2-Xq93kd-unique-to-this-test"
    masked = redaction.redact_text(f"PASSWORD={secret}")
    assert secret not in masked
    assert masked in redaction._cache.values()
    assert not any(secret in value for value in redaction._cache.values())
    assert not any(secret.encode() in digest for _generation, digest in redaction._cache)


def test_a_rule_added_later_applies_to_text_masked_before():
    text = "the canary is zq-marker-5e1f in the logs"
    assert redaction.redact_text(text) == text  # remembered as harmless
    redaction.add_redactor(lambda s: s.replace("zq-marker-5e1f", redaction.MASK))
    assert redaction.redact_text(text) == f"the canary is {redaction.MASK} in the logs"
    redaction.add_sensitive_keys("zqcanarykey")
    assert redaction.redact({"zqcanarykey": "v"}) == {"zqcanarykey": redaction.MASK}


def test_long_texts_are_masked_every_time_and_not_remembered():
    long = "x" * redaction.CACHE_TEXT_MAX + " PASSWORD=hunter2"
    before = len(redaction._cache)
    assert redaction.redact_text(long).endswith(f"PASSWORD={redaction.MASK}")
    assert len(redaction._cache) == before


def test_an_alert_body_is_stored_as_cleaning_then_masking_would_store_it():
    """The ingest cleans and masks the body in one walk: the stored body is what cleaning it
    and then masking it gives, for every secret shape and look-alike, in label values,
    annotations, label names that read as secrets, and with invisible characters."""
    values = [text for _, text, _ in SECRETS] + [text for _, text in LOOKALIKES]
    alerts = []
    for i, value in enumerate(values):
        hidden = value[: len(value) // 2] + "\u200b\x00" + value[len(value) // 2 :]
        alerts.append(
            alert(
                "Leaky",
                instance=f"node-{i}",
                detail=value,
                api_token=value,
                annotations={"summary": hidden, "description\u202e": value},
            )
        )
    body = notification(alerts, group="Leaky")
    body["commonAnnotations"] = {"secret": "s3cr3t-value", "note": values[0]}
    _payload, stored = parse(body)
    assert stored == redaction.redact(clean_tree(body)) | {"groupKey": stored["groupKey"]}
