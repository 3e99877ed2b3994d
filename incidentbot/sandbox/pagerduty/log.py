"""The request log entry for PagerDuty calls, built on the Slack sandbox's ``LoggedRequest``.

The generic log (``RequestLog``: thread-safe, append-only, JSON round trip) is reused as is.
A PagerDuty call has more to keep than a Slack one: which API (REST or Events), the concrete
path, the headers PagerDuty reads (``Accept``, ``Content-Type``, ``From``; never
``Authorization``) and the JSON body apart from the query string. ``method`` is the operation,
e.g. ``"POST /incidents"`` or ``"PUT /incidents/{id}"``, so faults and assertions name an
endpoint the way the API reference does; ``args`` holds the query parameters (a list for each
``name[]`` parameter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from incidentbot.sandbox.slack.log import LoggedRequest, RequestLog

__all__ = ["PagerDutyRequest", "RequestLog"]

LOGGED_HEADERS = ("accept", "content-type", "from")


@dataclass
class PagerDutyRequest(LoggedRequest):
    """One REST or Events API call and the answer it got."""

    api: str = "rest"
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str | None:
        """PagerDuty's error message (REST ``error.message``, Events ``message``), if any."""
        if self.ok or not isinstance(self.response, dict):
            return None
        error = self.response.get("error")
        if isinstance(error, dict):
            return str(error.get("message"))
        return str(self.response.get("message") or self.response.get("status"))

    @property
    def errors(self) -> list[str]:
        """The detailed ``errors`` list of a refusal (empty when there is none)."""
        if not isinstance(self.response, dict):
            return []
        error = self.response.get("error")
        found = error.get("errors") if isinstance(error, dict) else self.response.get("errors")
        return [str(e) for e in found] if isinstance(found, list) else []
