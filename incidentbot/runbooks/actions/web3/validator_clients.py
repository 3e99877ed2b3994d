"""``validator.stop`` and ``validator.start``: a validator client under supervisord, stopped
with proof and started with doppelgänger protection.

Stopping a validator client is only safe to build on (starting its keys elsewhere) once it
is proven to have stopped signing. ``validator.stop`` therefore asks supervisord to stop it,
checks its process is gone from the process table, and then watches the chain: its keys must
not be seen active (beacon API liveness) in any of the ``epochs`` epochs that follow. A key
seen active after the stop means something else signs with it, and fails the step
permanently: a person must find that signer before anything else runs.

``validator.start`` starts a client, by default only if it runs with doppelgänger protection
(read from supervisord's configuration: Lodestar's ``--doppelgangerProtectionEnabled``) and
only if its keys are not live right now. With ``confirm`` it waits until the keys are seen
active in an epoch after its doppelgänger window with the client still running (liveness
cannot tell who signed: earlier activity may be another client's); a client that exits
meanwhile found its keys live elsewhere (doppelgänger protection) or failed, and the step
fails saying so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from incidentbot.infra.supervisor import SupervisorClient
from incidentbot.ledger.actions import PermanentError, RetryableError
from incidentbot.runbooks.actions._common import fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext, plural
from incidentbot.runbooks.actions.web3._beacon import BeaconApi, BeaconApiError, index_list
from incidentbot.runbooks.actions.web3._sentences import count, indices, items, text
from incidentbot.runbooks.actions.web3._util import (
    HttpUrlText,
    Timeout,
    after_change,
    program_name,
    supervisor_socket,
    wait_until,
)
from incidentbot.runbooks.actions.web3.supervisor import STOPPED_STATES, start, stop
from incidentbot.runbooks.egress import policy_of

Indices = Annotated[list[int], BeforeValidator(index_list)]
# Epochs after a start before activity counts as the started client's: doppelgänger
# protection watches at least one epoch (Lodestar: the one after it registered the keys)
# before it signs or exits.
CONFIRM_AFTER_EPOCHS = 3
DOPPELGANGER_FLAGS = (
    "--doppelgangerProtectionEnabled",
    "--doppelganger-protection",
    "--enable-doppelganger-protection",
)


class _ClientInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    socket: str
    program: str
    beacon_url: HttpUrlText
    indices: Indices

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        return supervisor_socket(value)

    @field_validator("program")
    @classmethod
    def _program(cls, value: str) -> str:
        return program_name(value)


class StopInputs(_ClientInputs):
    epochs: int = Field(default=2, ge=1, le=16)
    timeout: Timeout = 900.0


def process_gone(pid: int | None) -> bool:
    """True when ``pid`` is not a live process here (gone, or a zombie)."""
    if not pid:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _client(ctx: ActionContext, action: str, inputs: _ClientInputs) -> SupervisorClient:
    policy_of(ctx.services).check_socket(action, inputs.socket, real=True)
    return SupervisorClient(inputs.socket, timeout=10.0)


def live_now(api: BeaconApi, indices: list[int]) -> tuple[int, list[int]]:
    """The keys among ``indices`` seen active in the previous or the current epoch."""
    current = api.clock().epoch()
    live: set[int] = set()
    for epoch in sorted({max(0, current - 1), current}):
        live |= {i for i, seen in api.liveness(epoch, indices).items() if seen}
    return current, sorted(live)


class ValidatorStop(Action):
    name = "validator.stop"
    description = (
        "Stop a validator client (supervisord) and prove it: its process gone and its keys "
        "not seen active for N epochs."
    )
    idempotent = True
    Inputs = StopInputs
    proves_stopped = True  # the interlock: ``indices`` stopped at ``program``
    outputs: ClassVar[dict[str, str]] = {
        "program": "the program",
        "pid_before": "its pid before the stop (null when it was not running)",
        "state": "its supervisord state afterwards",
        "stopped_epoch": "the epoch (by the chain's clock) in which it was seen stopped",
        "epochs_checked": "the epochs after it in which none of the keys was seen active",
        "epochs_unchecked": "epochs the node could no longer answer for (it was unreachable)",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        pid = count(o.get("pid_before"))
        said = text(o.get("program"), "The validator client")
        said += f" stopped (was pid {pid})" if pid is not None else " already was stopped"
        checked, unchecked = items(o.get("epochs_checked")), items(o.get("epochs_unchecked"))
        if checked:
            said += f"; its keys not live for {plural(len(checked), 'epoch')} ({indices(checked)})"
        if unchecked:
            which = "epochs" if len(unchecked) > 1 else "epoch"
            said += f"; {which} {indices(unchecked)} not checked (node unreachable)"
        return said

    def plan(self, inputs: StopInputs, ctx: ActionContext) -> str:
        policy = policy_of(ctx.services)
        policy.check_socket(self.name, inputs.socket)
        policy.check_url(self.name, inputs.beacon_url)
        return shown(
            ctx,
            f"stop {inputs.program} through supervisord at {inputs.socket}, check its process "
            f"is gone, then check on {inputs.beacon_url} that validators "
            f"{', '.join(map(str, inputs.indices))} are not seen active in the "
            f"{inputs.epochs} epochs after (up to {fmt_seconds(inputs.timeout)})",
        )

    def run(self, inputs: StopInputs, ctx: ActionContext) -> dict[str, Any]:
        client = _client(ctx, self.name, inputs)
        before = client.state(inputs.program)
        after = before
        if before.state not in STOPPED_STATES:
            after = stop(ctx, client, inputs.program, wait=True, timeout=min(inputs.timeout, 120))
        if not process_gone(before.pid):
            raise PermanentError(
                shown(
                    ctx,
                    f"supervisord says {inputs.program} is {after.state} but pid {before.pid} "
                    "still runs",
                )
            )
        try:
            return self._prove(ctx, inputs, client, before.pid)
        except RetryableError as exc:
            # The client is stopped by now: never "nothing happened".
            raise after_change(ctx, exc, f"{inputs.program} was stopped") from None

    def _prove(
        self, ctx: ActionContext, inputs: StopInputs, client: SupervisorClient, pid: int | None
    ) -> dict[str, Any]:
        """Watch the epochs after the stop for the keys (PermanentError if seen)."""
        with BeaconApi(ctx, self.name, inputs.beacon_url, 10.0) as api:
            clock = api.clock()
            stopped_epoch = clock.epoch()
            checked: list[int] = []
            unchecked: list[int] = []
            state = {"next": stopped_epoch + 1}

            def check() -> tuple[bool | None, str]:
                if not process_gone(pid):
                    raise PermanentError(shown(ctx, f"pid {pid} runs again"))
                current = clock.epoch()
                epoch = state["next"]
                if current <= epoch:
                    return None, f"epoch {current}, waiting for epoch {epoch} to end"
                if current > epoch + 1:  # the node can only answer for the previous epoch
                    unchecked.extend(range(epoch, current - 1))
                    state["next"] = epoch = current - 1
                try:
                    seen = api.liveness(epoch, inputs.indices)
                except BeaconApiError as exc:
                    return None, f"liveness for epoch {epoch}: {exc}"
                live = sorted(i for i, yes in seen.items() if yes)
                if live:
                    raise PermanentError(
                        shown(
                            ctx,
                            f"validators {', '.join(map(str, live))} were active in epoch "
                            f"{epoch}, after {inputs.program} stopped (pid {pid} is gone):"
                            " another client signs with these keys; find it before starting "
                            "any other",
                        )
                    )
                checked.append(epoch)
                state["next"] = epoch + 1
                done = len(checked) >= inputs.epochs
                return (True if done else None), f"checked epochs {checked}"

            wait_until(
                ctx,
                check,
                timeout=inputs.timeout,
                what=f"{inputs.epochs} epochs without {inputs.program}'s keys",
                interval=1.0,
                on_timeout=PermanentError,
            )
        return {
            "program": inputs.program,
            "pid_before": pid,
            "state": client.state(inputs.program).state,
            "stopped_epoch": stopped_epoch,
            "epochs_checked": checked,
            "epochs_unchecked": unchecked,
        }


class StartInputs(_ClientInputs):
    # require: refuse to start a client whose command line lacks doppelgänger protection.
    doppelganger: bool = True
    # Refuse when any of the keys is live in the previous or current epoch.
    refuse_if_live: bool = True
    # Wait until the keys are seen active with the client still running.
    confirm: bool = False
    timeout: Timeout = 600.0


class ValidatorStart(Action):
    name = "validator.start"
    description = (
        "Start a validator client (supervisord) with doppelgänger protection, refusing while "
        "its keys are live elsewhere; optionally until its keys are seen active."
    )
    idempotent = False  # a start after a crash must not be repeated blindly
    Inputs = StartInputs
    signs = True  # the interlock: ``program`` starts signing with ``indices``
    outputs: ClassVar[dict[str, str]] = {
        "program": "the program",
        "pid": "its pid",
        "state": "its supervisord state",
        "doppelganger": "whether its command line enables doppelgänger protection",
        "live_epoch": "with confirm: the first epoch after its doppelgänger window in which "
        "all its keys were active (it still running)",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        said = f"{text(o.get('program'), 'The validator client')} started: "
        said += text(o.get("state"), "state unknown").lower()
        pid = count(o.get("pid"))
        said += f" (pid {pid})" if pid is not None else ""
        if o.get("doppelganger") is True:
            said += ", with doppelgänger protection"
        elif o.get("doppelganger") is False:
            said += ", without doppelgänger protection"
        epoch = count(o.get("live_epoch"))
        return said + (f"; its keys live in epoch {epoch}" if epoch is not None else "")

    def plan(self, inputs: StartInputs, ctx: ActionContext) -> str:
        policy = policy_of(ctx.services)
        policy.check_socket(self.name, inputs.socket)
        policy.check_url(self.name, inputs.beacon_url)
        keys = ", ".join(map(str, inputs.indices))
        steps = []
        if inputs.doppelganger:
            steps.append("refuse unless it runs with doppelgänger protection")
        if inputs.refuse_if_live:
            steps.append(f"refuse if validators {keys} are active now on {inputs.beacon_url}")
        steps.append(f"start {inputs.program} through supervisord at {inputs.socket}")
        if inputs.confirm:
            steps.append(f"wait up to {fmt_seconds(inputs.timeout)} until its keys are active")
        return shown(ctx, "; ".join(steps))

    def run(self, inputs: StartInputs, ctx: ActionContext) -> dict[str, Any]:
        client = _client(ctx, self.name, inputs)
        command = client.command(inputs.program)
        protected = any(flag in command.split() for flag in DOPPELGANGER_FLAGS)
        if inputs.doppelganger and not protected:
            raise PermanentError(
                shown(
                    ctx,
                    f"{inputs.program} does not run with doppelgänger protection (its command "
                    "line has no --doppelgangerProtectionEnabled); not starting it",
                )
            )
        before = client.state(inputs.program)
        with BeaconApi(ctx, self.name, inputs.beacon_url, 10.0) as api:
            if inputs.refuse_if_live and before.state != "RUNNING":
                epoch, live = live_now(api, inputs.indices)
                if live:
                    raise PermanentError(
                        shown(
                            ctx,
                            f"validators {', '.join(map(str, live))} are active (epoch {epoch} "
                            f"or the one before) while {inputs.program} is {before.state}: "
                            "another client signs with them; not starting a second one",
                        )
                    )
            info = start(ctx, client, inputs.program, wait=True, timeout=min(inputs.timeout, 120))
            live_epoch = None
            if inputs.confirm:
                try:
                    live_epoch = self._confirm(ctx, inputs, client, api)
                except RetryableError as exc:
                    raise after_change(ctx, exc, f"{inputs.program} was started") from None
        return {
            "program": inputs.program,
            "pid": info.pid,
            "state": info.state,
            "doppelganger": protected,
            "live_epoch": live_epoch,
        }

    def _confirm(
        self, ctx: ActionContext, inputs: StartInputs, client: SupervisorClient, api: BeaconApi
    ) -> int:
        """Until the keys are active in a whole epoch after the client's doppelgänger window,
        with the client still running. Liveness cannot tell who signed, so only an epoch
        after that window counts: a client that found its keys live elsewhere has exited by
        then."""
        clock = api.clock()
        first = clock.epoch() + CONFIRM_AFTER_EPOCHS

        def check() -> tuple[int | None, str]:
            now = client.state(inputs.program)
            if now.state != "RUNNING":
                raise PermanentError(
                    shown(
                        ctx,
                        f"{inputs.program} exited ({now.state}, {now.description}) before its "
                        "keys were confirmed active: doppelgänger protection may have found "
                        "them live elsewhere; see its log",
                    )
                )
            epoch = clock.epoch() - 1  # the last complete epoch
            if epoch < first:
                return None, f"epoch {epoch + 1}, confirming from epoch {first}"
            try:
                seen = api.liveness(epoch, inputs.indices)
            except BeaconApiError as exc:
                return None, str(exc)
            live = [i for i, yes in seen.items() if yes]
            if len(live) == len(inputs.indices):
                return epoch, ""
            return None, f"epoch {epoch}: {len(live)} of {len(inputs.indices)} active"

        return wait_until(
            ctx,
            check,
            timeout=inputs.timeout,
            what=f"{inputs.program}'s keys to be active",
            interval=2.0,
        )
