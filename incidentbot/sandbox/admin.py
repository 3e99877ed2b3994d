"""Admin endpoints every local server has: the request log, armed faults, added latency.

The Slack and PagerDuty servers name what a fault targets differently (a Web API ``method``,
an ``endpoint`` such as ``POST /incidents``), so the selector's field name is a parameter.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class _Admin(Protocol):
    log: Any
    faults: Any

    def requests(self, selector: str | None = None) -> list[Any]: ...

    def fail_next(self, selector: str, **kw: Any) -> Any: ...

    def set_latency(self, seconds: float, selectors: list[str] | None = None) -> None: ...


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); ValueError otherwise."""
    raw = await request.body()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def admin_routes(server: _Admin, *, selector: str, default_hold_s: float) -> list[Route]:
    """``/_sandbox/log``, ``/_sandbox/faults`` and ``/_sandbox/latency`` for ``server``."""

    async def log(request: Request) -> Response:
        if request.method == "DELETE":
            server.log.clear()
            return JSONResponse({"ok": True})
        entries = server.requests(request.query_params.get(selector))
        return JSONResponse({"ok": True, "requests": [e.to_json() for e in entries]})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            server.faults.clear()
            return JSONResponse({"ok": True})
        if request.method == "POST":
            data = await read_json(request)
            try:
                fault = server.fail_next(
                    data[selector],
                    kind=data.get("kind", "ratelimited"),
                    count=int(data.get("count", 1)),
                    retry_after=int(data.get("retry_after", 1)),
                    status=int(data.get("status", 500)),
                    hold_s=float(data.get("hold_s", default_hold_s)),
                    applied=bool(data.get("applied", False)),
                )
            except (KeyError, ValueError) as exc:
                return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
            return JSONResponse({"ok": True, "fault": asdict(fault)})
        return JSONResponse({"ok": True, "faults": [asdict(f) for f in server.faults.pending()]})

    async def latency(request: Request) -> Response:
        data = await read_json(request)
        server.set_latency(float(data.get("seconds", 0.0)), data.get(selector + "s"))
        return JSONResponse({"ok": True})

    return [
        Route("/_sandbox/log", log, methods=["GET", "DELETE"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/latency", latency, methods=["POST"]),
    ]
