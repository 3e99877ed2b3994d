"""The ``runbooks`` section of the settings: where runbooks live, who may run and approve
them, how long an approval waits, and which commands ``shell.exec`` may start.

Imported by :mod:`incidentbot.config`; must not import it back.
"""

from __future__ import annotations

import fnmatch
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.policy_models import Duration
from incidentbot.runbooks.egress import EgressSettings
from incidentbot.runbooks.shell_policy import (
    DEFAULT_SHELL_PATH,
    ShellLimits,
    check_shell_allow,
    check_shell_env,
    check_shell_path,
)


class AccessRule(BaseModel):
    """Who may run, and who may approve, the runbooks whose names match ``runbooks``.

    ``users`` and ``approvers`` are actor ids: Slack user ids (``U…``) and command line names
    (``--as``); ``groups`` and ``approver_groups`` Slack user group ids (``S…``). An empty
    ``users`` and ``groups`` means "members of the incident channel" (in Slack; from the
    command line, whoever runs it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runbooks: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    approver_groups: list[str] = Field(default_factory=list)

    def matches(self, runbook: str) -> bool:
        return any(fnmatch.fnmatchcase(runbook, pattern) for pattern in self.runbooks)


class RunbookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dirs: list[Path] = Field(
        default_factory=lambda: [Path("runbooks")],
        description="directories searched for *.yaml runbooks, in order",
    )
    approval_timeout: Duration = Field(
        default=timedelta(minutes=15),
        description="how long an approval request waits before it expires",
    )
    access: list[AccessRule] = Field(
        default_factory=list,
        description="first rule matching a runbook's name applies; none: channel members run, "
        "the commander approves",
    )
    vars: dict[str, Any] = Field(
        default_factory=dict,
        description="values runbooks read as vars.<name>: where things are (load balancer "
        "sockets, node URLs), so a runbook takes a node's name and the settings say how to "
        "reach it",
    )
    shell_allow: list[str] = Field(
        default_factory=list,
        description="commands shell.exec may start (program names or absolute paths)",
    )
    shell_path: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SHELL_PATH),
        description="directories where shell.exec looks up allow-listed program names (and "
        "the PATH the programs get); never the bot's own PATH",
    )
    shell_env: list[str] | None = Field(
        default=None,
        description="the only environment variable names steps may set for shell.exec "
        "(unset: any name that is not refused)",
    )
    shell_limits: ShellLimits = Field(
        default_factory=ShellLimits,
        description="CPU time, memory, output, file size, open files and processes of each "
        "shell.exec program",
    )

    @field_validator("shell_allow")
    @classmethod
    def _shell_allow(cls, value: list[str]) -> list[str]:
        return check_shell_allow(value)

    @field_validator("shell_path")
    @classmethod
    def _shell_path(cls, value: list[str]) -> list[str]:
        return check_shell_path(value)

    @field_validator("shell_env")
    @classmethod
    def _shell_env(cls, value: list[str] | None) -> list[str] | None:
        return check_shell_env(value)

    egress: EgressSettings = Field(
        default_factory=EgressSettings,
        description="where actions may connect beyond public http(s) addresses: allowed "
        "hosts/CIDRs (optionally per action) and unix sockets",
    )

    def rule_for(self, runbook: str) -> AccessRule:
        for rule in self.access:
            if rule.matches(runbook):
                return rule
        return AccessRule()
