"""The local Slack server's ``conversations.rename``, over real HTTP with slack_sdk, as Slack's
method page and the vendored API description say: the rules of a new name, who may rename, and
the error codes."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from incidentbot.sandbox.slack import SlackSandbox
from incidentbot.sandbox.slack.spec import check_request_log, load_spec
from tests import slack_sandbox_fixtures

server, slack = slack_sandbox_fixtures.server, slack_sandbox_fixtures.slack  # fixtures


@pytest.fixture
def client(slack: SlackSandbox) -> WebClient:
    return slack.web_client()


def error_of(client: WebClient, **kwargs: str) -> str:
    with pytest.raises(SlackApiError) as info:
        client.conversations_rename(**kwargs)
    assert info.value.response.status_code == 200
    return str(info.value.response["error"])


def test_a_rename_changes_the_name_keeps_the_old_one_and_frees_it(
    slack: SlackSandbox, client: WebClient
) -> None:
    made = client.conversations_create(name="incident-standby-1")["channel"]
    renamed = client.conversations_rename(channel=made["id"], name="inc-7-rpc-down")["channel"]
    assert (renamed["id"], renamed["name"]) == (made["id"], "inc-7-rpc-down")
    assert renamed["previous_names"] == ["incident-standby-1"]
    assert slack.workspace.channel("inc-7-rpc-down").id == made["id"]
    # The old name is free again; the name it has is not an error.
    client.conversations_create(name="incident-standby-1")
    again = client.conversations_rename(channel=made["id"], name="inc-7-rpc-down")["channel"]
    assert again["previous_names"] == ["incident-standby-1"]
    assert check_request_log(slack.requests(), load_spec()) == []


def test_a_rename_is_refused_with_slacks_error_codes(
    slack: SlackSandbox, client: WebClient
) -> None:
    mine = client.conversations_create(name="incident-standby-1")["channel"]["id"]
    client.conversations_create(name="inc-1-taken")
    assert error_of(client, channel=mine, name="inc-1-taken") == "name_taken"
    assert error_of(client, channel=mine, name="Inc 1") == "invalid_name_specials"
    assert error_of(client, channel=mine, name="x" * 81) == "invalid_name_maxlength"
    assert error_of(client, channel=mine, name="") == "invalid_name_required"
    assert error_of(client, channel="C0NOPE", name="inc-2") == "channel_not_found"
    bob = slack.workspace.user("bob").id
    theirs = slack.workspace.add_channel("bobs-room", creator=bob, members=[bob])
    assert error_of(client, channel=theirs.id, name="inc-2") == "not_in_channel"
    theirs.members.append(slack.workspace.bot.id)
    assert error_of(client, channel=theirs.id, name="inc-2") == "not_authorized"
    slack.workspace.channels[mine].is_archived = True
    assert error_of(client, channel=mine, name="inc-3") == "is_archived"
    assert slack.workspace.channels[mine].name == "incident-standby-1"  # nothing changed
    assert check_request_log(slack.requests(), load_spec()) == []
