"""The actions every installation has (see each module for what it does)."""

from __future__ import annotations

from incidentbot.runbooks.actions.base import Action
from incidentbot.runbooks.actions.check import CheckThat
from incidentbot.runbooks.actions.http_request import HttpRequest
from incidentbot.runbooks.actions.incident_note import IncidentNote
from incidentbot.runbooks.actions.incident_page import IncidentPage
from incidentbot.runbooks.actions.shell_exec import ShellExec
from incidentbot.runbooks.actions.slack_post import SlackPost
from incidentbot.runbooks.actions.wait_sleep import WaitSleep
from incidentbot.runbooks.actions.web3 import WEB3_ACTIONS

BUILTIN_ACTIONS: tuple[type[Action], ...] = (
    HttpRequest,
    ShellExec,
    WaitSleep,
    SlackPost,
    IncidentNote,
    IncidentPage,
    CheckThat,
    *WEB3_ACTIONS,
)

__all__ = [
    "BUILTIN_ACTIONS",
    "HttpRequest",
    "IncidentNote",
    "ShellExec",
    "SlackPost",
    "WaitSleep",
]
