"""Pure parts of the ledger: redaction, failure classification, spec validation, migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect

from incidentbot import db, ledger
from incidentbot.ledger.actions import classify, parse_retry_after
from incidentbot.ledger.redact import redact_url
from tests.conftest import count


def test_redact_masks_secret_keys_at_any_depth():
    data = {
        "node": "rpc-2",
        "apiKey": "k",
        "nested": [{"slack_bot_token": "xoxb-1", "Authorization": "Bearer abc"}],
        "private_key": "0xabc",
        "mnemonic": "test test test",
        "idempotency_key": "run-1",  # needed to read, not a secret
        "empty_password": "",
        "count": 3,
    }
    assert ledger.redact(data) == {
        "node": "rpc-2",
        "apiKey": "***",
        "nested": [{"slack_bot_token": "***", "Authorization": "***"}],
        "private_key": "***",
        "mnemonic": "***",
        "idempotency_key": "run-1",
        "empty_password": "",
        "count": 3,
    }
    assert data["apiKey"] == "k"  # a copy: the caller's data is untouched


def test_redact_masks_credentials_inside_text():
    text = (
        "POST https://admin:pa55@rpc.example.com/v2/AbCdEf0123456789AbCdEf01?token=t0k&chain=1 "
        "with Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl and xoxb-12345-abcdefgh"
    )
    out = ledger.redact_text(text)
    for secret in ("pa55", "AbCdEf0123456789", "t0k", "eyJzdWIi", "xoxb-12345"):
        assert secret not in out
    assert "https://admin:***@rpc.example.com/v2/***?token=***&chain=1" in out
    assert redact_url("http://127.0.0.1:8545/") == "http://127.0.0.1:8545/"


def test_redaction_can_be_extended():
    ledger.add_sensitive_keys("routing_code")
    ledger.add_redactor(lambda s: s.replace("0xdeadbeef", "0x…"))
    assert ledger.redact({"routing_code": "R1", "note": "sent from 0xdeadbeef"}) == {
        "routing_code": "***",
        "note": "sent from 0x…",
    }


def _status_error(code: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://api.example.com/v1/page?token=secret")
    response = httpx.Response(code, headers=headers or {}, request=request)
    return httpx.HTTPStatusError("failed", request=request, response=response)


def test_classify_says_what_may_be_retried():
    request = httpx.Request("POST", "https://api.example.com/x")
    when = datetime.now(UTC) + timedelta(seconds=120)
    cases = [
        (ledger.RetryableError("busy", retry_after=7), "retry", 7),
        (ledger.PermanentError("no"), "permanent", None),
        (ledger.OutcomeUnknownError("sent"), "unknown", None),
        (_status_error(429, {"Retry-After": "3"}), "retry", 3),
        (_status_error(503), "retry", None),
        (_status_error(400), "permanent", None),
        (_status_error(404), "permanent", None),
        (httpx.ConnectError("refused", request=request), "retry", None),
        (httpx.ReadTimeout("slow", request=request), "unknown", None),
        (TimeoutError("slow"), "unknown", None),
        (ValueError("bug"), "permanent", None),
    ]
    for exc, kind, after in cases:
        verdict = classify(exc)
        assert (verdict.kind, verdict.retry_after) == (kind, after), exc
    dated = classify(_status_error(429, {"Retry-After": format_datetime(when, usegmt=True)}))
    assert dated.kind == "retry" and 100 < dated.retry_after <= 120
    message = classify(_status_error(400)).message
    assert message == "HTTP 400 Bad Request from POST https://api.example.com/v1/page"
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_registry_refuses_a_second_registration_of_a_name():
    reg = ledger.ActionRegistry()
    reg.register("a", lambda ctx, data: {})
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", lambda ctx, data: {})
    assert reg.names() == ["a"]


def test_migration_downgrades_and_upgrades_again(engine):
    url = engine.url.render_as_string(hide_password=False)
    cfg = db.alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert db.current_revision(engine) == "0001"
    assert not {"ledger_run", "ledger_step", "ledger_lock"} & set(inspect(engine).get_table_names())
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    assert count(engine, "ledger_run") == 0 and count(engine, "ledger_lock") == 0
