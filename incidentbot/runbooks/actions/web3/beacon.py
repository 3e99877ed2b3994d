"""``beacon.health``: a consensus client's health and sync status through the Beacon API.

Two standard endpoints (ethereum/beacon-APIs):

- ``GET /eth/v1/node/health``: 200 ready, 206 syncing (can serve incomplete data), 503 not
  initialised or having issues;
- ``GET /eth/v1/node/syncing``: ``{"data": {"head_slot", "sync_distance", "is_syncing",
  "is_optimistic", "el_offline"}}``, slots as decimal strings.

The outputs follow ``rpc.head``: ``ok`` says whether the node answered, ``head`` and ``lag``
are in slots rather than blocks.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict

from incidentbot.ledger.actions import classify
from incidentbot.runbooks.actions._common import fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext, plural
from incidentbot.runbooks.actions.egress_http import client as egress_client
from incidentbot.runbooks.actions.web3._util import HttpUrlText, Timeout
from incidentbot.runbooks.egress import policy_of

HEALTH = "/eth/v1/node/health"
SYNCING = "/eth/v1/node/syncing"
STATUSES = {200: "ready", 206: "syncing", 503: "not_initialised"}


class BeaconHealthInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrlText
    timeout: Timeout = 5.0


def endpoint(base: str, path: str) -> str:
    """``path`` under the Beacon API at ``base`` (which may carry a path and a query, as
    providers' URLs with a key do)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))


def _slot(value: Any) -> int | None:
    """A uint64 as the API gives it (a decimal string; some clients send a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


class BeaconHealth(Action):
    """Ask a beacon node whether it is ready and how far behind it is.

    Like ``rpc.head``, this does not raise when the node does not answer: it returns
    ``ok: false`` with the reason in ``error`` (credentials in the URL masked). A node that
    answers the health endpoint with 200, 206 or 503 is ``ok`` (it answered); whether it is
    usable is ``ready``/``status``. If ``/eth/v1/node/syncing`` fails while health answered,
    ``head`` and ``lag`` are null and ``error`` says why."""

    name = "beacon.health"
    description = (
        "Read a beacon node's health (/eth/v1/node/health) and sync status "
        "(/eth/v1/node/syncing): ready, syncing, head slot, distance."
    )
    idempotent = True
    Inputs = BeaconHealthInputs
    outputs: ClassVar[dict[str, str]] = {
        "ok": "true when the node answered the health endpoint (200, 206 or 503)",
        "status": "ready (200), syncing (206), not_initialised (503), or null when not ok",
        "health_status": "the HTTP status of /eth/v1/node/health",
        "ready": "true for 200",
        "syncing": "is_syncing (from the health status when /syncing did not answer)",
        "head": "head_slot",
        "lag": "sync_distance: slots between the head and the current slot",
        "optimistic": "is_optimistic: the head is not yet verified by the execution client",
        "el_offline": "el_offline: the execution client is unreachable",
        "error": "why the node (or its /syncing endpoint) did not answer; null otherwise",
    }

    def plan(self, inputs: BeaconHealthInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_url(self.name, inputs.url)
        return shown(
            ctx,
            f"GET {endpoint(inputs.url, HEALTH)} and {endpoint(inputs.url, SYNCING)} "
            f"(timeout {fmt_seconds(inputs.timeout)})",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        if not o.get("ok"):
            return f"The beacon node did not answer: {o.get('error') or 'no answer'}"
        state = str(o.get("status") or "answering").replace("_", " ")
        lag = o.get("lag")
        behind = f", {plural(lag, 'slot')} behind" if isinstance(lag, int) and lag else ""
        return f"The beacon node is {state} at slot {o.get('head', '?')}{behind}"

    def run(self, inputs: BeaconHealthInputs, ctx: ActionContext) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": False,
            "status": None,
            "health_status": None,
            "ready": False,
            "syncing": None,
            "head": None,
            "lag": None,
            "optimistic": None,
            "el_offline": None,
            "error": None,
        }
        policy_of(ctx.services).check_url(self.name, inputs.url)
        with egress_client(
            ctx, self.name, timeout=inputs.timeout, headers={"Accept": "application/json"}
        ) as http:
            url = endpoint(inputs.url, HEALTH)
            try:
                health = http.get(url)
            except httpx.HTTPError as exc:
                out["error"] = shown(ctx, f"GET {url}: {classify(exc).message}")
                return out
            out["health_status"] = health.status_code
            status = STATUSES.get(health.status_code)
            if status is None:
                out["error"] = shown(
                    ctx,
                    f"GET {url} answered {health.status_code} {health.reason_phrase}".rstrip()
                    + " (a Beacon API answers 200, 206 or 503; is this its URL?)",
                )
                return out
            out.update(ok=True, status=status, ready=status == "ready")
            out["syncing"] = {"ready": False, "syncing": True}.get(status)
            url = endpoint(inputs.url, SYNCING)
            try:
                response = http.get(url)
            except httpx.HTTPError as exc:
                out["error"] = shown(ctx, f"GET {url}: {classify(exc).message}")
                return out
        data = None
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                body = None
            data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            detail = _api_message(response)
            out["error"] = shown(
                ctx,
                f"GET {url} answered {response.status_code}"
                + (f": {detail}" if detail else " without a `data` object"),
            )
            return out
        syncing = _flag(data.get("is_syncing"))
        out.update(
            syncing=syncing if syncing is not None else out["syncing"],
            head=_slot(data.get("head_slot")),
            lag=_slot(data.get("sync_distance")),
            optimistic=_flag(data.get("is_optimistic")),
            el_offline=_flag(data.get("el_offline")),
        )
        return out


def _api_message(response: httpx.Response) -> str:
    """The ``message`` of a Beacon API error body, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:200]
    return ""
