"""Secrets never reach the logs, whoever logs them."""

from __future__ import annotations

import io
import logging

from incidentbot import logs


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.configure("DEBUG")
    log = logging.getLogger("some.library")
    log.info("calling %s", "https://eth-mainnet.example.com/v2/Ab3dEf9hIjKlMn0pQrStUvWx")
    log.debug("headers Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")
    log.warning("token xoxb-1234567890-abcdefghij leaked?")
    try:
        raise RuntimeError("connect to https://user:hunter2@rpc.internal:8545 failed")
    except RuntimeError:
        log.exception("request failed")
    out = stream.getvalue()
    for secret in (
        "Ab3dEf9hIjKlMn0pQrStUvWx",
        "eyJhbGciOiJIUzI1NiJ9",
        "xoxb-1234567890",
        "hunter2",
    ):
        assert secret not in out
    assert "level=INFO logger=some.library calling https://eth-mainnet.example.com/v2/***" in out
    assert "Traceback" in out and "RuntimeError" in out
    logging.getLogger().handlers.clear()
