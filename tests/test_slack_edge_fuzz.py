"""Fuzzing ``/slack/events`` and the ``/incident`` grammar through a running bot.

Whatever arrives (any content type, any bytes, signed or not, any command text), the answer
is never a 5xx and nothing is logged as an error or with a traceback.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidentbot.sandbox.slack.transport import sign
from tests.slack_harness import running_bot

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same inputs on every run: a failure reproduces
)

CONTENT_TYPES = st.sampled_from([
    "application/x-www-form-urlencoded", "application/json", "application/json; charset=utf-8",
    "text/plain", "multipart/form-data; boundary=b", "", "application/x-www-form-urlencoded;;",
])  # fmt: skip
TEXT = st.text(max_size=200)
HEADER = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
FORM_KEYS = st.sampled_from(["command", "text", "payload", "user_id", "channel_id",
                             "trigger_id", "ssl_check", "team_id"]) | TEXT  # fmt: skip
BODIES = st.one_of(
    st.binary(max_size=600),
    TEXT.map(str.encode),
    st.dictionaries(FORM_KEYS, TEXT, max_size=6).map(lambda d: urlencode(d).encode()),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"type": st.sampled_from(["event_callback", "url_verification",
                                                     "block_actions", "view_submission"])},
                          optional={"event": JSONISH, "event_id": TEXT, "challenge": TEXT,
                                    "trigger_id": TEXT, "user": JSONISH, "view": JSONISH,
                                    "actions": JSONISH}).map(
        lambda d: json.dumps(d).encode()),
)  # fmt: skip


@pytest.fixture
def bot(engine):
    with running_bot(engine) as (bot, sandbox):
        yield bot, sandbox


def no_errors_logged(caplog) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


def test_fuzz_the_http_edge(bot, caplog):
    _, sandbox = bot
    caplog.set_level(logging.WARNING)
    client = httpx.Client(timeout=10)

    @FUZZ
    @given(
        content_type=CONTENT_TYPES,
        body=BODIES,
        signing=st.sampled_from(["valid", "none", "forged", "odd"]),
        odd_stamp=HEADER,
        retry=st.none() | HEADER,
        as_payload=st.booleans(),
    )
    def check(content_type, body, signing, odd_stamp, retry, as_payload):
        if as_payload and content_type.startswith("application/x-www-form-urlencoded"):
            body = urlencode({"payload": body.decode("utf-8", "replace")}).encode()
        headers = {"Content-Type": content_type} if content_type else {}
        stamp = str(int(time.time()))
        if signing == "valid":
            headers["X-Slack-Request-Timestamp"] = stamp
            headers["X-Slack-Signature"] = sign(sandbox.signing_secret, stamp, body)
        elif signing == "forged":
            headers["X-Slack-Request-Timestamp"] = stamp
            headers["X-Slack-Signature"] = sign("not the secret", stamp, body)
        elif signing == "odd":
            headers["X-Slack-Request-Timestamp"] = odd_stamp
            headers["X-Slack-Signature"] = odd_stamp
        if retry is not None:
            headers["X-Slack-Retry-Num"] = retry
        resp = client.post(sandbox.driver.bot_url, content=body, headers=headers)
        assert resp.status_code < 500, (resp.status_code, resp.text, headers, body)
        assert "Traceback" not in resp.text

    check()
    client.close()
    no_errors_logged(caplog)


def test_fuzz_the_incident_grammar(bot, caplog):
    """Signed slash commands with any text, in a plain channel: always answered (200)."""
    _, sandbox = bot
    caplog.set_level(logging.WARNING)
    words = st.sampled_from([
        "declare", "sev", "sev1", "sev99", "sev-1", "status", "assign", "note", "update",
        "resolve", "run", "plan", "help", "list", "action", "page", "oncall", "handoff",
        "postmortem", "<!channel>", "<@U0000>", "\u202e", "\x00", "service:", "=", "'", '"',
        "--", "{{ 7*7 }}", "9" * 40,
    ]) | st.text(max_size=30)  # fmt: skip

    @FUZZ
    @given(st.lists(words, max_size=8).map(" ".join))
    def check(text):
        ack = sandbox.driver.slash_command(text, user="alice", channel="incidents")
        assert ack.status == 200, (ack.status, ack.body, text)
        assert "Traceback" not in ack.body

    check()
    no_errors_logged(caplog)
