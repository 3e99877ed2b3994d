"""``wait.sleep``: pause the runbook (let a node catch up, a cache expire)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from incidentbot.runbooks.actions._common import Seconds, fmt_seconds
from incidentbot.runbooks.actions.base import Action, ActionContext


class WaitSleepInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: Seconds


class WaitSleep(Action):
    name = "wait.sleep"
    description = "Wait a while; a stopped run ends the wait early."
    idempotent = True
    Inputs = WaitSleepInputs
    outputs: ClassVar[dict[str, str]] = {
        "slept": "seconds actually waited",
        "interrupted": "true when the run was stopped before the time was up",
    }

    def plan(self, inputs: WaitSleepInputs, ctx: ActionContext) -> str:
        return f"wait {fmt_seconds(inputs.seconds)}"

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        value = o.get("slept")
        slept = fmt_seconds(float(value)) if isinstance(value, (int, float)) else "?"
        return f"Stopped after {slept}" if o.get("interrupted") else f"Waited {slept}"

    def run(self, inputs: WaitSleepInputs, ctx: ActionContext) -> dict[str, Any]:
        # Sleeping has no side effect, so being stopped early is an answer, not a failure.
        started = time.monotonic()
        interrupted = ctx.wait(inputs.seconds)
        return {"slept": round(time.monotonic() - started, 3), "interrupted": interrupted}
