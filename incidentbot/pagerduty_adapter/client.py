"""The PagerDuty implementation of the ``Pager`` port, on the ``pagerduty`` package.

The client's own retries are switched off: retrying is the ledger's job, durably. Every
failure becomes an :class:`~incidentbot.ports.ExternalError` saying whether a retry can help
(429, 5xx, network errors) or not (a 400 such as a missing or invalid ``From``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pagerduty

from incidentbot.ports import ExternalError, OnCall, PageInfo

log = logging.getLogger(__name__)
T = TypeVar("T")


class PagerDutyPager:
    def __init__(
        self,
        api_token: str,
        *,
        from_email: str,
        base_url: str | None = None,
        ca_file: str | None = None,
        events_url: str | None = None,
        timeout: float = 10.0,
    ):
        kwargs: dict[str, Any] = {"default_from": from_email}
        if base_url:
            kwargs["base_url"] = base_url
        self._events_kwargs: dict[str, Any] = {"base_url": events_url} if events_url else {}
        if ca_file:  # a private CA (the local PagerDuty-compatible server uses one)
            kwargs["verify"] = ssl.create_default_context(cafile=ca_file)
            self._events_kwargs["verify"] = kwargs["verify"]
        self._timeout = timeout
        self.client = pagerduty.RestApiV2Client(api_token, **kwargs)
        self.client.timeout = timeout
        self.client.max_http_attempts = 1
        self.client.max_network_attempts = 0
        self.client.retry = {}

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except pagerduty.HttpError as exc:
            status = exc.response.status_code
            retry_after = None
            if status == 429:
                try:
                    retry_after = float(exc.response.headers.get("Retry-After", "1"))
                except ValueError:
                    retry_after = 1.0
            raise ExternalError(
                f"http_{status}",
                f"{what}: {_message(exc.response)}",
                retryable=status == 429 or status >= 500,
                retry_after=retry_after,
            ) from None
        except pagerduty.Error as exc:
            raise ExternalError("network_error", f"{what}: {exc}", retryable=True) from None
        except OSError as exc:
            raise ExternalError("network_error", f"{what}: {exc}", retryable=True) from None

    def trigger(
        self,
        *,
        service_id: str,
        escalation_policy_id: str | None,
        key: str,
        title: str,
        details: str,
        routing_key: str | None = None,
    ) -> PageInfo:
        existing = self.find(key)
        if existing is not None and existing.status != "resolved":
            return existing
        if routing_key:
            return self._trigger_event(routing_key, key, title, details)
        body: dict[str, Any] = {
            "type": "incident",
            "title": title[:1024],
            "service": {"id": service_id, "type": "service_reference"},
            "incident_key": key,
            "body": {"type": "incident_body", "details": details[:10000]},
        }
        if escalation_policy_id:
            body["escalation_policy"] = {
                "id": escalation_policy_id,
                "type": "escalation_policy_reference",
            }
        try:
            created = self._call(
                "create incident", lambda: self.client.rpost("/incidents", json={"incident": body})
            )
        except ExternalError as exc:
            # A retried create after a lost answer meets the open incident with our key.
            again = self.find(key) if exc.code == "http_400" else None
            if again is None:
                raise
            return again
        return _page(created)

    def _trigger_event(self, routing_key: str, key: str, title: str, details: str) -> PageInfo:
        """Events API v2: the dedup_key groups a repeat into the open incident, so a retry
        cannot page twice. The incident is then read back through the REST API."""
        events = pagerduty.EventsApiV2Client(routing_key, **self._events_kwargs)
        events.timeout = self._timeout
        events.max_http_attempts = 1
        events.max_network_attempts = 0
        self._call(
            "send event",
            lambda: events.trigger(
                summary=title[:1024],
                source="incidentbot",
                dedup_key=key,
                custom_details={"details": details[:10000]},
            ),
        )
        created = self.find(key)
        if created is None:  # PagerDuty processes events asynchronously: look again shortly
            raise ExternalError(
                "not_yet_created",
                "event accepted, incident not visible yet",
                retryable=True,
                retry_after=1.0,
            )
        return created

    def find(self, key: str) -> PageInfo | None:
        def query() -> list[dict[str, Any]]:
            return list(self.client.iter_all("/incidents", params={"incident_key": key}))

        found = self._call("find incident", query)
        open_first = sorted(found, key=lambda i: i.get("status") == "resolved")
        return _page(open_first[0]) if open_first else None

    def get(self, ref: str) -> PageInfo:
        """``GET /incidents/{id}``: PagerDuty takes an incident's number there as well."""
        found = self._call("read incident", lambda: self.client.rget(f"/incidents/{ref}"))
        return _page(found)

    def resolve(self, page_id: str) -> PageInfo:
        body = {"incident": {"type": "incident_reference", "status": "resolved"}}
        updated = self._call(
            "resolve incident", lambda: self.client.rput(f"/incidents/{page_id}", json=body)
        )
        return _page(updated)

    def add_note(self, page_id: str, text: str) -> None:
        body = {"note": {"content": text[:25000]}}
        self._call("add note", lambda: self.client.rpost(f"/incidents/{page_id}/notes", json=body))

    def oncalls(
        self,
        escalation_policy_ids: list[str],
        *,
        since: datetime,
        until: datetime,
        schedule_ids: list[str] | None = None,
    ) -> list[OnCall]:
        params: dict[str, Any] = {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "include[]": ["users"],
        }
        if escalation_policy_ids:
            params["escalation_policy_ids[]"] = escalation_policy_ids
        if schedule_ids:
            params["schedule_ids[]"] = schedule_ids
        rows = self._call(
            "list on-calls", lambda: list(self.client.iter_all("/oncalls", params=params))
        )
        out = []
        for row in rows:
            user = row.get("user") or {}
            schedule = row.get("schedule") or {}
            out.append(
                OnCall(
                    name=str(user.get("name") or user.get("summary") or "unknown"),
                    email=user.get("email"),
                    level=int(row.get("escalation_level") or 1),
                    start=_when(row.get("start")),
                    end=_when(row.get("end")),
                    schedule=schedule.get("summary"),
                )
            )
        return sorted(out, key=lambda o: (o.level, o.start or since))


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _page(incident: Any) -> PageInfo:
    data = dict(incident)
    service = data.get("service") or {}
    return PageInfo(
        id=str(data["id"]),
        number=data.get("incident_number"),
        url=data.get("html_url"),
        status=str(data.get("status", "triggered")),
        service_id=service.get("id"),
        key=data.get("incident_key"),
    )


def _message(response: Any) -> str:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return f"HTTP {response.status_code}"
    errors = "; ".join(error.get("errors") or [])
    return f"{error.get('message', 'error')}" + (f" ({errors})" if errors else "")
