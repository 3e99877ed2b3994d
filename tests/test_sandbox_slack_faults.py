"""Fault injection, latency, rate limits, the request log and the admin endpoints."""

from __future__ import annotations

import threading
from typing import Any
from urllib.error import URLError

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from incidentbot.sandbox.slack import SlackSandbox
from incidentbot.sandbox.slack.methods import load_all
from tests import slack_sandbox_fixtures

server, slack = slack_sandbox_fixtures.server, slack_sandbox_fixtures.slack  # fixtures


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bare_client(slack: SlackSandbox, **kw: Any) -> WebClient:
    """A client without retry handlers, so each fault is seen as it is."""
    return slack.web_client(retry_handlers=[], **kw)


def test_injected_429_carries_retry_after_and_then_recovers(slack: SlackSandbox) -> None:
    client = bare_client(slack)
    slack.fail_next("conversations.create", "ratelimited", retry_after=7)
    with pytest.raises(SlackApiError) as info:
        client.conversations_create(name="inc-1")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert info.value.response["error"] == "ratelimited"
    assert slack.workspace.channel_by_name("inc-1") is None
    assert client.conversations_create(name="inc-1")["ok"] is True
    assert [(e.status, e.fault) for e in slack.requests("conversations.create")] == [
        (429, "ratelimited"),
        (200, None),
    ]


def test_server_error_is_retried_by_slack_sdk(slack: SlackSandbox) -> None:
    slack.fail_next("chat.postMessage", "server_error", status=503)
    channel = slack.workspace.channel("incidents").id
    with pytest.raises(SlackApiError) as info:
        bare_client(slack).chat_postMessage(channel=channel, text="x")
    assert info.value.response.status_code == 503
    slack.fail_next("chat.postMessage", "server_error")
    retrying = slack.web_client(retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)])
    assert retrying.chat_postMessage(channel=channel, text="after a 500")["ok"] is True
    statuses = [e.status for e in slack.requests("chat.postMessage")]
    assert statuses == [503, 500, 200]
    assert slack.snapshot("incidents").texts() == ["after a 500"]


def test_timeout_without_effect_then_recovery(slack: SlackSandbox) -> None:
    client = bare_client(slack, timeout=0.3)
    slack.fail_next("conversations.create", "timeout", hold_s=1.5)
    with pytest.raises((TimeoutError, URLError)):
        client.conversations_create(name="inc-2")
    assert slack.workspace.channel_by_name("inc-2") is None
    # The retry, with a timeout a busy machine can meet (0.3 s is only for the held call).
    assert bare_client(slack).conversations_create(name="inc-2")["ok"] is True


def test_timeout_after_the_work_was_done(slack: SlackSandbox) -> None:
    """The answer is lost but Slack did create the channel: a retry meets ``name_taken``."""
    client = bare_client(slack, timeout=0.3)
    slack.fail_next("conversations.create", "timeout", hold_s=1.5, applied=True)
    with pytest.raises((TimeoutError, URLError)):
        client.conversations_create(name="inc-3")
    assert slack.workspace.channel_by_name("inc-3") is not None
    with pytest.raises(SlackApiError) as info:
        bare_client(slack).conversations_create(name="inc-3")
    assert info.value.response["error"] == "name_taken"


def test_fault_for_any_method_counts_down(slack: SlackSandbox) -> None:
    client = bare_client(slack)
    slack.fail_next("*", "server_error", count=2)
    for call in (client.auth_test, client.users_list):
        with pytest.raises(SlackApiError):
            call()
    assert client.auth_test()["ok"] is True
    assert slack.faults.pending() == []


def test_fault_arguments_are_checked(slack: SlackSandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        slack.fail_next("auth.test", "explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        slack.fail_next("auth.test", count=0)


def test_latency_applies_to_every_call_or_to_chosen_methods(slack: SlackSandbox) -> None:
    client = bare_client(slack)
    slack.set_latency(0.03)
    client.auth_test()
    client.users_list()
    slack.set_latency(0.02, ["users.list"])
    client.auth_test()
    client.users_list()
    slack.set_latency(0)
    assert [e.delay_s for e in slack.requests()] == [0.03, 0.03, 0.0, 0.02]


def test_rate_limits_are_off_by_default(slack: SlackSandbox) -> None:
    client = bare_client(slack)
    channel = slack.workspace.channel("incidents").id
    for n in range(12):
        client.chat_postMessage(channel=channel, text=f"m{n}")
    assert all(e.status == 200 for e in slack.requests())


def test_conversations_create_is_tier_2(slack: SlackSandbox) -> None:
    clock = FakeClock()
    slack.rate_limits.clock = clock
    slack.enable_rate_limits()
    client = bare_client(slack)
    for n in range(20):
        client.conversations_create(name=f"inc-{n}")
    with pytest.raises(SlackApiError) as info:
        client.conversations_create(name="inc-20")
    assert info.value.response.status_code == 429
    assert slack.requests()[-1].response == {"ok": False, "error": "ratelimited"}
    clock.now += 3.0  # Tier 2 refills 20 calls a minute: one every 3 s
    assert client.conversations_create(name="inc-20")["ok"] is True


def test_post_message_is_limited_per_channel(slack: SlackSandbox) -> None:
    clock = FakeClock()
    slack.rate_limits.clock = clock
    slack.enable_rate_limits()
    client = bare_client(slack)
    digest = slack.workspace.channel("incidents").id
    other = client.conversations_create(name="inc-9")["channel"]["id"]
    for n in range(3):  # a short burst is tolerated
        client.chat_postMessage(channel=digest, text=f"m{n}")
    with pytest.raises(SlackApiError) as info:
        client.chat_postMessage(channel=digest, text="too fast")
    assert info.value.response.status_code == 429
    assert slack.requests()[-1].fault == "rate_limit"
    assert client.chat_postMessage(channel=other, text="another channel is fine")["ok"] is True
    clock.now += 1.0
    assert client.chat_postMessage(channel=digest, text="a second later")["ok"] is True


def test_rate_limit_retry_handler_waits_and_recovers(slack: SlackSandbox) -> None:
    slack.rate_limits.overrides["chat.postMessage"] = (1.0, 1.0)
    slack.enable_rate_limits()
    client = slack.web_client(retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])
    digest = slack.workspace.channel("incidents").id
    client.chat_postMessage(channel=digest, text="first")
    assert client.chat_postMessage(channel=digest, text="second")["ok"] is True
    statuses = [e.status for e in slack.requests("chat.postMessage")]
    assert statuses[0] == 200 and statuses[-1] == 200 and 429 in statuses
    assert slack.snapshot("incidents").texts() == ["first", "second"]


def test_request_log_records_what_was_sent(slack: SlackSandbox) -> None:
    client = bare_client(slack)
    channel = client.conversations_create(name="inc-5", team_id=slack.workspace.team_id)
    entry = slack.requests("conversations.create")[0]
    assert entry.args == {"name": "inc-5", "team_id": slack.workspace.team_id}
    assert entry.status == 200 and entry.ok and entry.user == slack.workspace.bot.id
    assert entry.response == channel.data
    assert entry.token_source == "header"
    assert "xoxb" not in str(entry.to_json())


def test_stop_releases_held_calls(slack: SlackSandbox) -> None:
    sandbox = SlackSandbox().start()
    sandbox.fail_next("auth.test", "timeout", hold_s=60)
    answers: list[Any] = []

    def call() -> None:
        headers = {"Authorization": f"Bearer {sandbox.bot_token}"}
        answers.append(
            httpx.post(sandbox.base_url + "auth.test", headers=headers, timeout=20).json()
        )

    caller = threading.Thread(target=call)
    caller.start()
    while sandbox.faults.pending():  # wait until the call has arrived and is being held
        threading.Event().wait(0.01)
    sandbox.stop()
    caller.join()
    assert answers == [{"ok": False, "error": "request_timeout"}]


# -- admin endpoints ----------------------------------------------------------------------


def test_admin_endpoints_mirror_the_python_api(slack: SlackSandbox) -> None:
    admin = httpx.Client(base_url=slack.url + "/_sandbox")
    client = bare_client(slack)
    armed = admin.post(
        "/faults", json={"method": "auth.test", "kind": "ratelimited", "retry_after": 3}
    )
    assert armed.json()["fault"]["retry_after"] == 3
    assert [f["method"] for f in admin.get("/faults").json()["faults"]] == ["auth.test"]
    with pytest.raises(SlackApiError):
        client.auth_test()
    assert admin.post("/faults", json={"method": "x", "kind": "nope"}).status_code == 400
    admin.post("/faults", json={"method": "users.list", "kind": "server_error"})
    assert admin.delete("/faults").json()["ok"] is True
    assert client.users_list()["ok"] is True

    admin.post("/latency", json={"seconds": 0.01})
    client.auth_test()
    admin.post("/latency", json={"seconds": 0})
    assert slack.requests()[-1].delay_s == 0.01

    assert admin.post("/rate_limits", json={"enabled": True}).json()["enabled"] is True
    assert slack.rate_limits.enabled is True
    admin.post("/rate_limits", json={"enabled": False})

    log = admin.get("/log", params={"method": "auth.test"}).json()["requests"]
    assert [e["status"] for e in log] == [429, 200]
    client.chat_postMessage(channel=slack.workspace.channel("incidents").id, text="hello digest")
    assert "hello digest" in admin.get("/transcript", params={"channel": "incidents"}).text
    assert admin.get("/transcript", params={"channel": "nope"}).status_code == 404
    channels = {c["name"]: c for c in admin.get("/channels").json()["channels"]}
    assert channels["incidents"]["messages"][0]["author"] == "Incident Bot"
    described = admin.get("/workspace").json()
    assert described["base_url"] == slack.base_url
    assert {u["name"] for u in described["users"]} >= {"alice", "bob", "incidentbot"}
    assert admin.delete("/log").json()["ok"] is True
    assert admin.get("/log").json()["requests"] == []
    admin.post("/reset")
    assert slack.snapshot("incidents").messages == []


def test_a_sandbox_bug_is_a_logged_500(
    slack: SlackSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> dict[str, Any]:
        raise RuntimeError("bug in a handler")

    monkeypatch.setitem(load_all(), "auth.test", broken)
    with pytest.raises(SlackApiError) as info:
        bare_client(slack).auth_test()
    assert info.value.response.status_code == 500
    assert slack.requests()[-1].fault == "sandbox_error"


def test_posts_to_a_response_url_take_faults_and_latency_only_by_their_name(
    slack: SlackSandbox,
) -> None:
    ws = slack.workspace
    url = slack.response_urls.create("actions", ws.user("alice").id, ws.channel("incidents").id)
    slack.fail_next("*", "server_error")  # the Web API's, not hooks'
    slack.set_latency(0.03)
    assert slack.faults.latency_for("response_url") == 0.0
    assert httpx.post(url, json={"text": "one"}).status_code == 200
    slack.set_latency(0.2, ["response_url"])
    assert slack.faults.latency_for("response_url") == 0.2
    assert slack.faults.latency_for("chat.postEphemeral") == 0.0
    slack.set_latency(0)

    landed = threading.Event()
    armed = slack.fail_next("response_url", "server_error", applied=True, after=landed.set)
    lost = httpx.post(url, json={"text": "two"})  # posted, and the answer lost
    assert (lost.status_code, lost.json()) == (500, {"ok": False, "error": "fatal_error"})
    assert landed.is_set() and armed.remaining == 0
    slack.fail_next("response_url", "ratelimited", retry_after=3)
    limited = httpx.post(url, json={"text": "three"})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert [e.text for e in slack.ephemeral("alice")] == ["one", "two"]
