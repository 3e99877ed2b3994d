"""``incident.page``: page a service's on-call for the incident, through the bot's paging.

The page is queued like ``/incident page`` (durably, once per service while it is open). With
``required: false`` a bot without PagerDuty (or without that service) returns ``paged: false``
and the reason instead of failing: a rollback that pages on-call still finishes, and its
output (on the timeline) says nobody was paged and why.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from incidentbot.ledger.actions import PermanentError
from incidentbot.runbooks.actions._common import shown
from incidentbot.runbooks.actions.base import Action, ActionContext


class PageInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str | None = Field(default=None, description="default: the default service")
    message: str | None = None
    required: bool = True


class IncidentPage(Action):
    name = "incident.page"
    description = "Page a service's on-call for the incident (as /incident page does)."
    idempotent = True
    Inputs = PageInputs
    outputs: ClassVar[dict[str, str]] = {
        "paged": "true when a page is queued or already open for the service",
        "service": "the service paged",
        "new": "false when that service was already paged for this incident",
        "reason": "why nobody was paged (with required: false)",
    }

    def plan(self, inputs: PageInputs, ctx: ActionContext) -> str:
        what = inputs.service or "the default service"
        return shown(ctx, f"page {what}" + (f": {inputs.message}" if inputs.message else ""))

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        if not o.get("paged"):
            return f"Nobody was paged: {o.get('reason') or 'not required'}"
        if o.get("new") is False:
            return f"{o.get('service', 'The service')} was already paged for this incident"
        return f"Paged {o.get('service', 'the service')} on-call"

    def run(self, inputs: PageInputs, ctx: ActionContext) -> dict[str, Any]:
        from incidentbot import db
        from incidentbot.errors import DomainError
        from incidentbot.incidents import service as svc
        from incidentbot.paging.flows import request_page

        settings, engine = ctx.services.settings, ctx.services.engine
        if ctx.incident is None or settings is None or engine is None:
            return self._cannot(inputs, "incident.page needs an incident and the bot's database")
        if not settings.pagerduty.enabled:
            return self._cannot(inputs, "paging is not configured in this bot")
        message = shown(ctx, inputs.message) if inputs.message else None
        try:
            with db.transaction(engine) as s:
                incident = svc.get(s, ctx.incident.ref)
                page, new = request_page(
                    s,
                    settings,
                    incident,
                    inputs.service,
                    actor=ctx.requester or "incidentbot",
                    message=message,
                )
                service = page.service
        except DomainError as exc:
            return self._cannot(inputs, str(exc))
        return {"paged": True, "service": service, "new": new, "reason": None}

    @staticmethod
    def _cannot(inputs: PageInputs, reason: str) -> dict[str, Any]:
        if inputs.required:
            raise PermanentError(reason)
        return {"paged": False, "service": inputs.service, "new": False, "reason": reason}
