"""Conformance with Slack's own API description, and the layering rule for the sandbox."""

from __future__ import annotations

import ast
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from incidentbot.sandbox.slack import LoggedRequest, SlackSandbox
from incidentbot.sandbox.slack.methods import load_all
from incidentbot.sandbox.slack.schema import validate
from incidentbot.sandbox.slack.spec import (
    SUPPLEMENT,
    SlackWebSpec,
    SpecUnavailable,
    check_event_payload,
    check_request_log,
    find_specs_dir,
    load_spec,
)
from incidentbot.sandbox.specs import VENDORED_DIR
from tests import slack_sandbox_fixtures

slack = slack_sandbox_fixtures.slack  # fixture: the module server below, reset


ROOT = Path(__file__).resolve().parents[1]
# The Slack server's own package, and the pieces every local server shares.
SERVER_MAY_IMPORT = (
    "incidentbot.sandbox.slack",
    "incidentbot.sandbox.specs",
    "incidentbot.sandbox.admin",
    "incidentbot.sandbox.serving",
)
WIRING = {"sandbox", "cli", "demo.py"}  # modules allowed to connect the bot and the sandbox


@pytest.fixture(scope="module")
def spec() -> SlackWebSpec:
    return load_spec()


@pytest.fixture(scope="module")
def server() -> Iterator[SlackSandbox]:
    with SlackSandbox(bot_url="http://127.0.0.1:9/not-used") as sandbox:
        yield sandbox


def expect_error(call: Any, code: str) -> None:
    with pytest.raises(SlackApiError) as info:
        call()
    assert info.value.response["error"] == code


MODAL = {
    "type": "modal",
    "title": {"type": "plain_text", "text": "Declare"},
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}],
}


def full_session(slack: SlackSandbox, client: WebClient) -> None:
    """Every method the sandbox serves, on its happy path and on its usual errors."""
    ws = slack.workspace
    alice, bob = ws.user("alice").id, ws.user("bob").id
    general, digest = ws.channel("general").id, ws.channel("incidents").id
    client.auth_test()
    chan = client.conversations_create(name="inc-1-rpc", team_id=ws.team_id)["channel"]["id"]
    expect_error(lambda: client.conversations_create(name="inc-1-rpc"), "name_taken")
    expect_error(lambda: client.conversations_create(name="Bad!"), "invalid_name_specials")
    spare = client.conversations_create(name="incident-standby-1")["channel"]["id"]
    client.conversations_rename(channel=spare, name="inc-1-rpc-spare")
    expect_error(lambda: client.conversations_rename(channel=spare, name="inc-1-rpc"), "name_taken")
    client.conversations_info(channel=chan, include_num_members=True)
    expect_error(lambda: client.conversations_info(channel="C0NOPE00000"), "channel_not_found")
    client.conversations_setTopic(channel=chan, topic="SEV2 · investigating")
    client.conversations_setPurpose(channel=chan, purpose="RPC lag on node-3")
    expect_error(
        lambda: client.conversations_setTopic(channel=general, topic="x"), "not_in_channel"
    )
    client.conversations_invite(channel=chan, users=[alice, bob])
    expect_error(
        lambda: client.conversations_invite(channel=chan, users=[alice]), "already_in_channel"
    )
    expect_error(
        lambda: client.conversations_invite(channel=chan, users=["U0NOPE00000"]), "user_not_found"
    )
    expect_error(
        lambda: client.conversations_invite(channel=chan, users=[ws.bot.id]), "cant_invite_self"
    )
    client.conversations_members(channel=chan, limit=2)
    client.conversations_join(channel=general)
    client.conversations_list(types="public_channel,private_channel", exclude_archived=True)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"IC <@{alice}>"}}]
    posted = client.chat_postMessage(channel=chan, text="SEV2", blocks=blocks)
    expect_error(
        lambda: client.chat_postMessage(channel=chan, text="x", blocks=[{"type": "nope"}]),
        "invalid_blocks",
    )
    client.chat_postMessage(channel=chan, text="a reply", thread_ts=posted["ts"])
    client.chat_update(channel=chan, ts=posted["ts"], text="SEV1", blocks=blocks)
    expect_error(
        lambda: client.chat_update(channel=chan, ts="1700000000.000001", text="x"),
        "message_not_found",
    )
    client.chat_postEphemeral(channel=chan, user=alice, text="only you")
    client.chat_getPermalink(channel=chan, message_ts=posted["ts"])
    client.pins_add(channel=chan, timestamp=posted["ts"])
    expect_error(lambda: client.pins_add(channel=chan, timestamp=posted["ts"]), "already_pinned")
    client.reactions_add(channel=chan, timestamp=posted["ts"], name="eyes")
    expect_error(
        lambda: client.reactions_add(channel=chan, timestamp=posted["ts"], name="eyes"),
        "already_reacted",
    )
    client.bookmarks_add(channel_id=chan, title="Runbook", type="link", link="https://rb.example/x")
    client.users_info(user=alice)
    expect_error(lambda: client.users_info(user="U0NOPE00000"), "user_not_found")
    client.users_lookupByEmail(email="bob@nodeworks.example")
    expect_error(lambda: client.users_lookupByEmail(email="x@y.example"), "users_not_found")
    client.users_list(limit=3)
    groups = client.usergroups_list(include_users=True, include_count=True)["usergroups"]
    client.usergroups_users_list(usergroup=groups[0]["id"])
    expect_error(lambda: client.usergroups_users_list(usergroup="S0NOPE00000"), "no_such_subteam")
    view = client.views_open(trigger_id=ws.issue_trigger(alice), view=MODAL)["view"]
    client.views_push(trigger_id=ws.issue_trigger(alice), view=MODAL)
    client.views_update(view_id=view["id"], view=MODAL, hash=view["hash"])
    expect_error(lambda: client.views_open(trigger_id="1.2.x", view=MODAL), "invalid_trigger_id")
    client.conversations_open(users=alice)
    client.chat_postMessage(channel=alice, text="a direct message")
    client.conversations_history(channel=chan, limit=10)
    client.conversations_history(channel=digest)
    client.conversations_archive(channel=chan)
    expect_error(lambda: client.chat_postMessage(channel=chan, text="x"), "is_archived")
    expect_error(
        lambda: client.chat_postMessage(channel="C0NOPE00000", text="x"),
        "channel_not_found",
    )


def test_every_served_method_is_described(spec: SlackWebSpec) -> None:
    missing = spec.missing_methods(load_all())
    assert missing == ["bookmarks.add"]  # newer than the 2021 description
    assert set(missing) <= set(SUPPLEMENT)


def test_a_full_session_conforms(spec: SlackWebSpec, slack: SlackSandbox) -> None:
    full_session(slack, slack.web_client())
    log = slack.requests()
    assert {e.method for e in log} == set(load_all())
    problems = check_request_log(log, spec)
    assert problems == [], "\n".join(map(str, problems))
    over_http = httpx.get(slack.url + "/_sandbox/log").json()["requests"]
    assert len(over_http) == len(log)
    assert check_request_log(over_http, spec) == []


def test_undeclared_argument_is_reported(spec: SlackWebSpec, slack: SlackSandbox) -> None:
    client = slack.web_client()
    digest = slack.workspace.channel("incidents").id
    client.api_call("chat.postMessage", json={"channel": digest, "text": "x", "colour": "red"})
    client.conversations_create(name="inc-2", team_id=slack.workspace.team_id)
    problems = check_request_log(slack.requests(), spec)
    assert [(p.method, p.kind, p.detail) for p in problems] == [
        ("chat.postMessage", "undeclared_argument", "'colour'")
    ]
    assert str(problems[0]).startswith("#1 chat.postMessage")


def test_missing_required_and_mistyped_arguments_are_reported(
    spec: SlackWebSpec, slack: SlackSandbox
) -> None:
    client = slack.web_client()
    digest = slack.workspace.channel("incidents").id
    for call in (
        lambda: client.api_call("chat.getPermalink", params={"channel": digest}),
        lambda: client.api_call(
            "conversations.members", params={"channel": digest, "limit": "ten"}
        ),
    ):
        with pytest.raises(SlackApiError):
            call()
    kinds = {(p.method, p.kind, p.detail) for p in check_request_log(slack.requests(), spec)}
    assert ("chat.getPermalink", "missing_required_argument", "message_ts") in kinds
    assert ("conversations.members", "argument_type", "limit='ten' is not a integer") in kinds


def test_missing_token_is_a_missing_required_argument(
    spec: SlackWebSpec, slack: SlackSandbox
) -> None:
    with pytest.raises(SlackApiError):
        WebClient(base_url=slack.base_url).chat_postMessage(channel="C1", text="x")
    kinds = [(p.kind, p.detail) for p in check_request_log(slack.requests(), spec)]
    assert ("missing_required_argument", "token") in kinds


def test_bad_responses_are_reported(spec: SlackWebSpec) -> None:
    def entry(method: str, response: dict[str, Any]) -> LoggedRequest:
        return LoggedRequest(
            seq=1,
            method=method,
            http_method="POST",
            args={"name": "x"},
            user="U1",
            token_source="header",
            content_type="application/json",
            status=200,
            response=response,
            started_at=0.0,
            duration_s=0.0,
        )

    no_channel = check_request_log([entry("conversations.create", {"ok": True})], spec)
    assert [p.kind for p in no_channel] == ["response_schema"]
    assert "channel" in no_channel[0].detail
    odd_error = check_request_log(
        [entry("conversations.create", {"ok": False, "error": "made_up"})], spec
    )
    assert [p.kind for p in odd_error] == ["undocumented_error"]
    bad_id = {"ok": True, "channel": {"id": "lowercase"}}
    assert check_request_log([entry("conversations.info", bad_id)], spec)
    assert [p.kind for p in check_request_log([entry("chat.teleport", {"ok": True})], spec)] == [
        "unknown_method"
    ]


def test_strict_mode_reports_supplemented_methods(spec: SlackWebSpec, slack: SlackSandbox) -> None:
    client = slack.web_client()
    digest = slack.workspace.channel("incidents").id
    client.bookmarks_add(channel_id=digest, title="Runbook", type="link", link="https://rb.example")
    assert check_request_log(slack.requests(), spec) == []
    strict = check_request_log(slack.requests(), spec, strict=True)
    assert [(p.method, p.kind) for p in strict] == [("bookmarks.add", "not_in_vendor_spec")]


def test_event_payloads_match_the_events_description(
    spec: SlackWebSpec, slack: SlackSandbox
) -> None:
    ws = slack.workspace
    digest = ws.channel("incidents")
    msg = ws.post(digest, ws.user("alice"), "node-3 down")
    bob = ws.user("bob").id
    item = {"type": "message", "channel": digest.id, "ts": msg.ts}
    events = [
        {
            "type": "reaction_added",
            "user": bob,
            "reaction": "pushpin",
            "item_user": msg.user,
            "item": item,
        },
        {"type": "member_joined_channel", "user": bob, "channel": digest.id, "channel_type": "C"},
        {"type": "message", "channel": digest.id, "user": msg.user, "text": msg.text, "ts": msg.ts},
    ]
    for event in events:
        payload = json.loads(slack.driver.event_request(event).body)
        assert check_event_payload(payload) == [], event["type"]
    broken = json.loads(slack.driver.event_request(events[0]).body)
    del broken["event_id"]
    assert [p.kind for p in check_event_payload(broken)] == ["event_schema"]


# -- the compact schema validator ----------------------------------------------------------


def test_schema_subset() -> None:
    root = {"definitions": {"id": {"type": "string", "pattern": "^U[A-Z0-9]{2,}$"}}}
    schema = {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {
            "id": {"$ref": "#/definitions/id"},
            "tz": {"items": [{"type": "null"}, {"type": "string"}]},
            "n": {"type": ["integer", "null"]},
            "tags": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string"},
            },
            "url": {"type": "string", "format": "uri"},
        },
    }
    assert (
        validate(
            {"id": "U123", "tz": None, "n": 3, "tags": ["a"], "url": "https://x.y/z"}, schema, root
        )
        == []
    )
    problems = validate(
        {"id": "x", "tz": 5, "n": True, "tags": ["a", "a"], "url": "nope", "extra": 1}, schema, root
    )
    joined = "\n".join(problems)
    for needle in ("$.id", "$.tz", "$.n", "not unique", "$.url", "'extra'"):
        assert needle in joined
    assert validate({}, schema, root) == ["$: missing required 'id'"]


def test_specs_dir_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENTBOT_SPECS_DIR", str(tmp_path))
    with pytest.raises(SpecUnavailable, match="INCIDENTBOT_SPECS_DIR"):
        find_specs_dir()
    monkeypatch.delenv("INCIDENTBOT_SPECS_DIR")
    real = find_specs_dir()
    assert real == VENDORED_DIR
    shutil.copy(real / "slack_web_openapi_v2.json", tmp_path)
    monkeypatch.setenv("INCIDENTBOT_SPECS_DIR", str(tmp_path))
    assert find_specs_dir() == tmp_path


# -- layering ------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_slack_server_and_core_do_not_import_each_other() -> None:
    """The server speaks only Slack's protocol; the core reaches it only through slack_sdk.

    Only the wiring (the CLI, the demo lab) may import both sides; the server package itself
    imports nothing outside it.
    """
    package = ROOT / "incidentbot"
    server = package / "sandbox" / "slack"
    for path in server.rglob("*.py"):
        outside = {
            m
            for m in _imports(path)
            if m.startswith("incidentbot") and not m.startswith(SERVER_MAY_IMPORT)
        }
        assert outside == set(), f"{path} imports {outside}"
    for path in package.rglob("*.py"):
        top = path.relative_to(package).parts[0]
        if top in WIRING or top.startswith("cli"):
            continue
        assert not any(m.startswith("incidentbot.sandbox") for m in _imports(path)), path
