"""``haproxy.servers``, ``haproxy.set_server_state``, ``haproxy.set_weight``: an RPC load
balancer's servers, through HAProxy's runtime API (``stats socket ... level admin``).

Changes are set-to-value (idempotent) and verified by reading the server back: a change that
HAProxy accepted but that does not show is an error, not a success.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.infra.haproxy import HaproxyError, HaproxyRuntime, ServerRow
from incidentbot.ledger.actions import OutcomeUnknownError, PermanentError
from incidentbot.runbooks.actions._common import Seconds, fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext, plural
from incidentbot.runbooks.actions.web3._util import wait_until
from incidentbot.runbooks.egress import policy_of

# The server states each admin state may read back as (``show servers state``): "ready" only
# clears maintenance and drain, so whether the server is UP or DOWN is up to its checks.
EXPECTED: dict[str, tuple[str, ...]] = {
    "ready": ("UP", "DOWN"),
    "drain": ("DRAIN",),
    "maint": ("MAINT",),
}
_NAME_PATTERN = r"^[A-Za-z0-9._:-]+$"


def _address(value: str) -> str:
    value = value.strip()
    HaproxyRuntime(value)  # parses only (ValueError saying what is wrong); connects to nothing
    return value


def check_runtime(ctx: ActionContext, action: str, address: str) -> None:
    """Plan-time egress check of a runtime API address: a unix socket must be one the policy
    lists; a TCP host written as an address must be allowed."""
    api = HaproxyRuntime(address)
    policy = policy_of(ctx.services)
    if api.unix_path is not None:
        policy.check_socket(action, api.unix_path)
    elif api.tcp_address is not None:
        policy.check_host(action, api.tcp_address[0])


def runtime(ctx: ActionContext, action: str, address: str) -> HaproxyRuntime:
    """A client of the runtime API at ``address`` under the egress policy: a unix socket
    must be listed (symbolic links resolved); a TCP host is resolved once, checked, and the
    client connects to that address."""
    api = HaproxyRuntime(address)
    policy = policy_of(ctx.services)
    if api.unix_path is not None:
        policy.check_socket(action, api.unix_path, real=True)
        return api
    host, port = api.tcp_address or ("", 0)
    try:
        pinned = policy.connect_address(action, host, port)
    except OSError as exc:
        raise HaproxyError(
            "connect_failed", f"cannot resolve {host}: {exc}", retryable=True
        ) from None
    return HaproxyRuntime(f"tcp:[{pinned}]:{port}" if ":" in pinned else f"tcp:{pinned}:{port}")


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    socket: str
    backend: str = Field(pattern=_NAME_PATTERN)
    server: str = Field(pattern=_NAME_PATTERN)

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        return _address(value)


class SetServerStateInputs(_Target):
    state: Literal["ready", "drain", "maint"]
    verify_timeout: Seconds = 5.0

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class SetWeightInputs(_Target):
    weight: int = Field(ge=0, le=256)
    verify_timeout: Seconds = 5.0


class ServersInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    socket: str
    backend: str | None = Field(default=None, pattern=_NAME_PATTERN)

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        return _address(value)


def row_dict(row: ServerRow) -> dict[str, Any]:
    return {
        "backend": row.backend,
        "server": row.server,
        "state": row.state,
        "status": row.status,
        "weight": row.weight,
        "check_status": row.check_status,
        "check_description": row.check_description,
        "address": row.address,
        "backup": row.backup,
        "last_change_s": row.last_change_s,
    }


def _saved_state(api: HaproxyRuntime, backend: str, server: str) -> ServerRow:
    """The server from ``show servers state`` (the admin state HAProxy keeps)."""
    for row in api.server_states(backend):
        if row.server == server:
            return row
    raise HaproxyError("no_such_server", f"{backend}/{server} is gone from `show servers state`")


def _verify(
    ctx: ActionContext,
    api: HaproxyRuntime,
    inputs: _Target,
    holds: Any,
    wanted: str,
    timeout: float,
) -> ServerRow:
    def check() -> tuple[ServerRow | None, str]:
        row = _saved_state(api, inputs.backend, inputs.server)
        return (row if holds(row) else None), f"it reads {row.state}, weight {row.weight}"

    def refused(message: str) -> Exception:
        return PermanentError(
            shown(
                ctx,
                f"HAProxy at {inputs.socket} accepted {wanted} for {inputs.backend}/"
                f"{inputs.server} but it did not take: {message}",
            )
        )

    return wait_until(
        ctx,
        check,
        timeout=timeout,
        what=f"{inputs.backend}/{inputs.server} to show {wanted}",
        on_timeout=refused,
        on_stop=OutcomeUnknownError,
    )


class HaproxySetServerState(Action):
    """Set a server's admin state: ``ready``, ``drain`` (no new connections, checks go on) or
    ``maint`` (out entirely, checks stop); then read it back from ``show servers state``
    until it shows (DRAIN, MAINT; UP or DOWN for ready), failing if it does not within
    ``verify_timeout``. An unknown backend or server is refused with the known ones listed."""

    name = "haproxy.set_server_state"
    description = (
        "Set an HAProxy server to ready, drain or maint through the runtime API and verify it took."
    )
    idempotent = True
    Inputs = SetServerStateInputs
    outputs: ClassVar[dict[str, str]] = {
        "backend": "the backend",
        "server": "the server",
        "previous_state": "UP, DOWN, MAINT or DRAIN before",
        "state": "the state read back afterwards",
        "changed": "false when the server already was in the requested admin state",
        "status": "HAProxy's own words afterwards (`show stat`: UP, DOWN 1/2, MAINT, ...)",
        "check_status": "the last health check's status (L7OK, L4CON, ...; null in maint)",
        "weight": "the server's weight",
    }

    def plan(self, inputs: SetServerStateInputs, ctx: ActionContext) -> str:
        check_runtime(ctx, self.name, inputs.socket)
        return shown(
            ctx,
            f"set server {inputs.backend}/{inputs.server} state {inputs.state} through the "
            f"HAProxy runtime API at {inputs.socket}, then read it back (up to "
            f"{fmt_seconds(inputs.verify_timeout)})",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        where = f"{o.get('backend', '?')}/{o.get('server', '?')}"
        if o.get("changed") is False:
            return f"{where} already was {o.get('state', '?')}"
        return f"{where} moved from {o.get('previous_state', '?')} to {o.get('state', '?')}"

    def run(self, inputs: SetServerStateInputs, ctx: ActionContext) -> dict[str, Any]:
        api = runtime(ctx, self.name, inputs.socket)
        api.server(inputs.backend, inputs.server)  # unknown names: the known ones listed
        before = _saved_state(api, inputs.backend, inputs.server)
        expected = EXPECTED[inputs.state]
        api.set_state(inputs.backend, inputs.server, inputs.state)
        after = _verify(
            ctx,
            api,
            inputs,
            lambda row: row.state in expected,
            f"state {inputs.state}",
            inputs.verify_timeout,
        )
        shown_row = api.server(inputs.backend, inputs.server)
        return {
            "backend": inputs.backend,
            "server": inputs.server,
            "previous_state": before.state,
            "state": after.state,
            "changed": before.state not in expected,
            "status": shown_row.status,
            "check_status": shown_row.check_status,
            "weight": after.weight,
        }


class HaproxySetWeight(Action):
    """Set a server's weight (0 to 256; 0 sends it no new traffic) and read it back."""

    name = "haproxy.set_weight"
    description = "Set an HAProxy server's weight (0-256) through the runtime API and verify it."
    idempotent = True
    Inputs = SetWeightInputs
    outputs: ClassVar[dict[str, str]] = {
        "backend": "the backend",
        "server": "the server",
        "previous_weight": "the weight before",
        "weight": "the weight read back afterwards",
        "changed": "false when it already had that weight",
        "state": "the server's state (UP, DOWN, MAINT, DRAIN)",
    }

    def plan(self, inputs: SetWeightInputs, ctx: ActionContext) -> str:
        check_runtime(ctx, self.name, inputs.socket)
        return shown(
            ctx,
            f"set server {inputs.backend}/{inputs.server} weight {inputs.weight} through the "
            f"HAProxy runtime API at {inputs.socket}, then read it back",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        where = f"{o.get('backend', '?')}/{o.get('server', '?')}"
        if o.get("changed") is False:
            return f"{where} already had weight {o.get('weight', '?')}"
        before, after = o.get("previous_weight", "?"), o.get("weight", "?")
        return f"{where} weight changed from {before} to {after}"

    def run(self, inputs: SetWeightInputs, ctx: ActionContext) -> dict[str, Any]:
        api = runtime(ctx, self.name, inputs.socket)
        api.server(inputs.backend, inputs.server)
        before = _saved_state(api, inputs.backend, inputs.server)
        api.set_weight(inputs.backend, inputs.server, inputs.weight)
        after = _verify(
            ctx,
            api,
            inputs,
            lambda row: row.weight == inputs.weight,
            f"weight {inputs.weight}",
            inputs.verify_timeout,
        )
        return {
            "backend": inputs.backend,
            "server": inputs.server,
            "previous_weight": before.weight,
            "weight": after.weight,
            "changed": before.weight != inputs.weight,
            "state": after.state,
        }


class HaproxyServers(Action):
    """List the servers HAProxy knows (of one backend, or all), with state, weight and the
    last health check (from ``show stat``)."""

    name = "haproxy.servers"
    description = "List HAProxy's servers with their state, weight and health check status."
    idempotent = True
    Inputs = ServersInputs
    outputs: ClassVar[dict[str, str]] = {
        "servers": "[{backend, server, state, status, weight, check_status, check_description, "
        "address, backup, last_change_s}]",
        "states": "state per server, keyed `backend/server`",
        "up": "how many are UP",
        "down": "how many are DOWN",
        "maint": "how many are in MAINT",
        "drain": "how many are DRAIN",
        "total": "how many servers",
    }

    def plan(self, inputs: ServersInputs, ctx: ActionContext) -> str:
        check_runtime(ctx, self.name, inputs.socket)
        which = f"backend {inputs.backend}" if inputs.backend else "all backends"
        return shown(
            ctx, f"list the servers of {which} through the HAProxy runtime API at {inputs.socket}"
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        counts = [
            f"{o[k]} {k.upper() if k != 'maint' else 'in MAINT'}"
            for k in ("up", "down", "drain", "maint")
            if o.get(k)
        ]
        return f"{plural(o.get('total', 0), 'server')}: {', '.join(counts) or 'none up'}"

    def run(self, inputs: ServersInputs, ctx: ActionContext) -> dict[str, Any]:
        rows = runtime(ctx, self.name, inputs.socket).servers(inputs.backend)
        states = ("up", "down", "maint", "drain")
        counts = {state: sum(1 for r in rows if r.state == state.upper()) for state in states}
        return {
            "servers": [row_dict(r) for r in rows],
            "states": {r.name: r.state for r in rows},
            **counts,
            "total": len(rows),
        }
