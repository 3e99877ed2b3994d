"""``check.that``: stop the run, with a message, unless a condition holds.

How a runbook refuses: "is the node really unhealthy?", "is another backend still healthy?".
The condition is usually an expression over params and earlier outputs
(``that: "{{ steps.compare.outputs.lag >= params.max_lag }}"``); the message says what was found
and what to do instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from incidentbot.ledger.actions import PermanentError
from incidentbot.runbooks.actions._common import shown
from incidentbot.runbooks.actions.base import Action, ActionContext


class CheckInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    that: StrictBool
    otherwise: str = Field(min_length=1, description="why the run stops when `that` is false")


class CheckThat(Action):
    name = "check.that"
    description = "Go on only if `that` is true; otherwise stop the run saying `otherwise`."
    idempotent = True
    Inputs = CheckInputs
    outputs: ClassVar[dict[str, str]] = {"passed": "true (the run stops otherwise)"}

    def plan(self, inputs: CheckInputs, ctx: ActionContext) -> str:
        if inputs.that:
            return "check: passes"
        return shown(ctx, f"check: would stop the run: {inputs.otherwise}")

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        return "The check passed" if o.get("passed") else "The check did not pass"

    def run(self, inputs: CheckInputs, ctx: ActionContext) -> dict[str, Any]:
        if not inputs.that:
            raise PermanentError(shown(ctx, inputs.otherwise))
        return {"passed": True}
