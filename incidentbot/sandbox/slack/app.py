"""The Starlette app: the Web API, Socket Mode, response_urls, permalinks and the admin API.

The admin endpoints mirror the Python methods of ``SlackSandbox`` so that a bot or a person in
another process (curl, the demo) can arm faults, read the request log and print the transcript.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

from incidentbot.sandbox.admin import admin_routes, read_json
from incidentbot.sandbox.slack import transcript
from incidentbot.sandbox.slack.api import WebApi
from incidentbot.sandbox.slack.driver import Ack
from incidentbot.sandbox.slack.models import SlackError

if TYPE_CHECKING:
    from incidentbot.sandbox.slack.server import SlackSandbox


def ack_summary(ack: Ack) -> dict[str, Any]:
    """An ack as JSON (the request body is left out: it may be large)."""
    return {
        "kind": ack.kind,
        "status": ack.status,
        "body": ack.body,
        "elapsed_s": ack.elapsed_s,
        "retry_num": ack.retry_num,
        "timed_out": ack.timed_out,
        "error": ack.error,
        "problem": ack.problem,
        "transport": ack.transport,
        "envelope_id": ack.envelope_id,
        "context": ack.request.context,
    }


def build_app(sandbox: SlackSandbox) -> Starlette:
    """Routes for one sandbox; every handler reads the sandbox's live state."""
    web_api = WebApi(
        lambda: sandbox.workspace,
        sandbox.faults,
        sandbox.rate_limits,
        sandbox.log,
        sandbox.closing,
        socket_mode=sandbox.socket_mode,
    )

    async def rate_limits(request: Request) -> Response:
        data = await read_json(request)
        sandbox.enable_rate_limits(bool(data.get("enabled", True)))
        return JSONResponse({"ok": True, "enabled": sandbox.rate_limits.enabled})

    async def show_transcript(request: Request) -> Response:
        try:
            text = sandbox.transcript(request.query_params.get("channel"))
        except SlackError as exc:
            return PlainTextResponse(exc.code, status_code=404)
        return PlainTextResponse(text + "\n")

    async def channels(request: Request) -> Response:
        with sandbox.workspace.lock:
            snaps = [asdict(sandbox.snapshot(c)) for c in list(sandbox.workspace.channels)]
        return JSONResponse({"ok": True, "channels": snaps})

    async def ephemeral(request: Request) -> Response:
        user = request.query_params.get("user")
        items = [asdict(e) for e in sandbox.ephemeral(user)]
        return JSONResponse({"ok": True, "ephemeral": items})

    async def acks(request: Request) -> Response:
        return JSONResponse({"ok": True, "acks": [ack_summary(a) for a in sandbox.driver.acks]})

    async def workspace(request: Request) -> Response:
        return JSONResponse({"ok": True, **sandbox.describe()})

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return JSONResponse({"ok": True})

    async def command(request: Request) -> Response:
        data = await read_json(request)
        ack = await anyio.to_thread.run_sync(
            lambda: sandbox.driver.slash_command(
                data.get("text", ""),
                user=data.get("user", "alice"),
                channel=data.get("channel", "incidents"),
                command=data.get("command", "/incident"),
            )
        )
        return JSONResponse({"ok": True, "ack": ack_summary(ack)})

    async def event(request: Request) -> Response:
        data = await read_json(request)
        sent = await anyio.to_thread.run_sync(lambda: sandbox.driver.send_event(data["event"]))
        return JSONResponse({"ok": True, "acks": [ack_summary(a) for a in sent]})

    async def socket(request: Request) -> Response:
        if request.method == "POST":
            try:
                sandbox.driver.mode = str((await read_json(request))["mode"])
            except (KeyError, ValueError) as exc:
                return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        hub = sandbox.socket_mode
        return JSONResponse(
            {
                "ok": True,
                "mode": sandbox.driver.mode,
                "connected": hub.connected,
                "connections": [asdict(c) for c in hub.connections()],
                "history": [asdict(c) for c in hub.history],
                "stray": [asdict(m) for m in hub.stray],
            }
        )

    async def socket_disconnect(request: Request) -> Response:
        data = await read_json(request)
        close_after = data.get("close_after", 2.0)
        try:
            sent = await anyio.to_thread.run_sync(
                lambda: sandbox.socket_mode.disconnect(
                    str(data.get("reason", "refresh_requested")),
                    connection_id=data.get("connection_id"),
                    close_after=None if close_after is None else float(close_after),
                )
            )
        except SlackError as exc:
            return JSONResponse({"ok": False, "error": exc.code}, status_code=404)
        return JSONResponse({"ok": True, "connections": sent})

    async def response_url(request: Request) -> Response:
        rid = request.url.path.lstrip("/")
        try:
            body: Any = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        return await web_api.response_url(lambda: sandbox.response_urls.post(rid, body))

    async def permalink(request: Request) -> Response:
        ws = sandbox.workspace
        raw = request.path_params["ts"].removeprefix("p")
        ts = f"{raw[:-6]}.{raw[-6:]}"
        with ws.lock:
            channel = ws.channels.get(request.path_params["channel"])
            msg = channel.message(ts) if channel else None
            if channel is None or msg is None:
                return PlainTextResponse("message_not_found", status_code=404)
            snap = transcript.snapshot(ws, channel)
        shown = next((m for m in snap.messages if m.ts == ts), None)
        text = f"{shown.author}: {shown.text}" if shown else msg.text
        return PlainTextResponse(f"#{channel.name}\n{text}\n")

    routes = [
        Route("/api/{method}", web_api.handle, methods=["GET", "POST"]),
        WebSocketRoute("/link/", sandbox.socket_mode.endpoint),
        Route("/commands/{rest:path}", response_url, methods=["POST"]),
        Route("/actions/{rest:path}", response_url, methods=["POST"]),
        Route("/archives/{channel}/{ts}", permalink, methods=["GET"]),
        *admin_routes(sandbox, selector="method", default_hold_s=31.0),
        Route("/_sandbox/rate_limits", rate_limits, methods=["POST"]),
        Route("/_sandbox/transcript", show_transcript, methods=["GET"]),
        Route("/_sandbox/channels", channels, methods=["GET"]),
        Route("/_sandbox/ephemeral", ephemeral, methods=["GET"]),
        Route("/_sandbox/acks", acks, methods=["GET"]),
        Route("/_sandbox/workspace", workspace, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/command", command, methods=["POST"]),
        Route("/_sandbox/event", event, methods=["POST"]),
        Route("/_sandbox/socket", socket, methods=["GET", "POST"]),
        Route("/_sandbox/socket/disconnect", socket_disconnect, methods=["POST"]),
    ]
    return Starlette(routes=routes)
