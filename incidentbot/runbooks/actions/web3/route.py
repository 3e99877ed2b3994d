"""``haproxy.route_to``: send a backend's traffic to one server.

A failover in one step: the chosen server is set ``ready`` and every other server of the
backend ``drain`` (no new connections; health checks go on, so HAProxy's view stays true) or
``maint``. Each change is read back. The previous admin states are in the outputs, so a
rollback (or a person) can put things back as they were: they are read once, before the first
attempt, and kept in the run ledger, so an attempt after a crash half-way reports the states
from before the run touched anything.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from incidentbot.runbooks.actions._common import Seconds, fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext, names
from incidentbot.runbooks.actions.web3.haproxy import (
    EXPECTED,
    SetServerStateInputs,
    _saved_state,
    _Target,
    _verify,
    check_runtime,
    runtime,
)

SAID = {"drain": "drained", "maint": "in maintenance", "up": "ready"}  # afterwards, in words


class RouteInputs(_Target):
    others: Literal["drain", "maint"] = "drain"
    verify_timeout: Seconds = 5.0


class HaproxyRouteTo(Action):
    """Make ``server`` the only server of ``backend`` that takes new connections."""

    name = "haproxy.route_to"
    description = "Send a backend's traffic to one server: it ready, every other server drained."
    idempotent = True
    Inputs = RouteInputs
    outputs: ClassVar[dict[str, str]] = {
        "server": "the server now taking the traffic",
        "previous": "admin state per server before (UP, DOWN, DRAIN, MAINT)",
        "states": "state per server afterwards",
        "changed": "the servers whose state changed",
    }

    def plan(self, inputs: RouteInputs, ctx: ActionContext) -> str:
        check_runtime(ctx, self.name, inputs.socket)
        return shown(
            ctx,
            f"route {inputs.backend} to {inputs.server}: set it ready and every other server "
            f"{inputs.others} through the HAProxy runtime API at {inputs.socket}, reading each "
            f"back (up to {fmt_seconds(inputs.verify_timeout)})",
        )

    def remember(self, inputs: RouteInputs, ctx: ActionContext) -> dict[str, Any]:
        """The admin states before the first attempt: after a crash half-way, the retry
        reports these as ``previous``, not the half-applied ones it finds."""
        api = runtime(ctx, self.name, inputs.socket)  # the egress policy applies here too
        api.server(inputs.backend, inputs.server)  # unknown names: the known ones listed
        return {"previous": {row.server: row.state for row in api.server_states(inputs.backend)}}

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        states = o.get("states") or {}
        server = o.get("server", "?")
        others: dict[str, list[str]] = {}
        for name, state in states.items() if isinstance(states, dict) else ():
            if name != server:
                others.setdefault(str(state).lower(), []).append(name)
        rest = "; ".join(f"{names(v)} {SAID.get(s, s)}" for s, v in others.items())
        return f"Traffic moved to {server}" + (f"; {rest}" if rest else "")

    def run(self, inputs: RouteInputs, ctx: ActionContext) -> dict[str, Any]:
        api = runtime(ctx, self.name, inputs.socket)
        api.server(inputs.backend, inputs.server)  # unknown names: the known ones listed
        rows = api.server_states(inputs.backend)
        kept = (ctx.remembered or {}).get("previous")
        previous = dict(kept) if isinstance(kept, dict) else {r.server: r.state for r in rows}
        order = [inputs.server] + [r.server for r in rows if r.server != inputs.server]
        states: dict[str, str] = {}
        for server in order:
            wanted = "ready" if server == inputs.server else inputs.others
            expected = EXPECTED[wanted]
            one = SetServerStateInputs(
                socket=inputs.socket,
                backend=inputs.backend,
                server=server,
                state=wanted,
                verify_timeout=inputs.verify_timeout,
            )
            if _saved_state(api, inputs.backend, server).state not in expected:
                api.set_state(inputs.backend, server, wanted)
            row = _verify(
                ctx,
                api,
                one,
                lambda r, expected=expected: r.state in expected,
                f"state {wanted}",
                inputs.verify_timeout,
            )
            states[server] = row.state
        changed = [s for s in order if previous.get(s) != states[s]]
        return {
            "server": inputs.server,
            "previous": previous,
            "states": states,
            "changed": changed,
        }
