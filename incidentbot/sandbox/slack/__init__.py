"""A local Slack-compatible server: Web API, signed requests to the bot, faults, transcript.

Typical use::

    with SlackSandbox(bot_url="http://127.0.0.1:3000/slack/events") as slack:
        client = slack.web_client()            # slack_sdk.WebClient, base_url changed only
        slack.driver.slash_command("declare sev2 RPC nodes lagging", user="alice")
        print(slack.transcript())

A Socket Mode bot connects with the app-level token instead (``slack.app_token``); the driver
then sends the same commands and events over its WebSocket. See docs/sandbox.md for the
methods served, Socket Mode, the admin endpoints and fault injection.
"""

from incidentbot.sandbox.slack.driver import Ack, BotDriver, SignedRequest, sign
from incidentbot.sandbox.slack.faults import Fault, FaultPlan, RateLimiter
from incidentbot.sandbox.slack.log import LoggedRequest, RequestLog
from incidentbot.sandbox.slack.models import SlackError
from incidentbot.sandbox.slack.server import SlackSandbox
from incidentbot.sandbox.slack.socket_mode import Envelope, SocketModeHub
from incidentbot.sandbox.slack.transcript import ChannelSnapshot, ShownMessage
from incidentbot.sandbox.slack.workspace import Workspace

__all__ = [
    "Ack",
    "BotDriver",
    "ChannelSnapshot",
    "Envelope",
    "Fault",
    "FaultPlan",
    "LoggedRequest",
    "RateLimiter",
    "RequestLog",
    "ShownMessage",
    "SignedRequest",
    "SlackError",
    "SlackSandbox",
    "SocketModeHub",
    "Workspace",
    "sign",
]
