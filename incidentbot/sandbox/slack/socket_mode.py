"""Socket Mode: Slack's WebSocket transport, served by the sandbox.

A Socket Mode app has no public URL. It calls ``apps.connections.open`` with its app-level
token (``xapp-…``), gets a single-use WebSocket URL, connects, and receives ``hello``; from
then on every slash command, interaction and event arrives as an *envelope* that the app
acknowledges by sending back the envelope's id (with a response payload where the envelope
accepts one) within 3 seconds. Slack spreads envelopes over an app's connections (at most
10), asks for a reconnection with a ``disconnect`` message, and keeps connections alive with
WebSocket pings (answered by uvicorn's WebSocket layer, as Slack's servers answer them).

``SocketModeHub.deliver`` is called from the driver's synchronous threads while the sockets
live on the server's event loop; the two meet through one ``concurrent.futures.Future`` per
envelope, resolved when the ack arrives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from incidentbot.sandbox.slack.models import SlackError
from incidentbot.sandbox.slack.socket_messages import (
    MAX_CONNECTIONS,
    RESPONSE_PAYLOAD_INTERACTIONS,
    ConnectionRecord,
    Delivery,
    Envelope,
    StrayMessage,
    disconnect_message,
    hello,
)

logger = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008

__all__ = [
    "MAX_CONNECTIONS",
    "RESPONSE_PAYLOAD_INTERACTIONS",
    "ConnectionRecord",
    "Delivery",
    "Envelope",
    "SocketModeHub",
    "StrayMessage",
]


class _Connection:
    def __init__(self, websocket: WebSocket, record: ConnectionRecord) -> None:
        self.websocket = websocket
        self.record = record
        self.loop = asyncio.get_running_loop()
        self.send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(message))


@dataclass
class _Pending:
    envelope: Envelope
    connection_id: str
    future: concurrent.futures.Future[tuple[str, dict[str, Any], str]]


class SocketModeHub:
    """Tickets, live connections and envelopes awaiting their ack, for one app."""

    def __init__(
        self,
        *,
        app_token: str,
        app_id: Callable[[], str],
        ws_url: Callable[[], str],
        closing: threading.Event,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.app_token = app_token
        self._app_id = app_id  # read per connection: SlackSandbox.reset swaps the workspace
        self._ws_url = ws_url
        self.closing = closing
        self.max_connections = max_connections
        self.history: list[ConnectionRecord] = []
        self.stray: list[StrayMessage] = []
        self._tickets: set[str] = set()
        self._connections: dict[str, _Connection] = {}
        self._pending: dict[str, _Pending] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # -- apps.connections.open ------------------------------------------------------------

    def is_app_token(self, token: str | None) -> bool:
        return token is not None and token == self.app_token

    def open_connection(self) -> dict[str, Any]:
        """The ``apps.connections.open`` answer: a single-use URL to connect to."""
        ticket = uuid.uuid4().hex
        with self._lock:
            self._tickets.add(ticket)
        return {"url": f"{self._ws_url()}?ticket={ticket}&app_id={self._app_id()}"}

    # -- the WebSocket endpoint (runs on the server's event loop) -------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        """Accept a ticket once, say hello, then read acks until the app goes away.

        The connection counts as open from before the upgrade is answered, so a driver in
        ``auto`` mode sees it as soon as the app's handshake returns; envelopes picked for it
        meanwhile wait on its send lock, which ``hello`` holds first.
        """
        ticket = websocket.query_params.get("ticket", "")
        with self._lock:
            known = ticket in self._tickets
            self._tickets.discard(ticket)
        if not known:
            # Refused before the upgrade: the client sees an HTTP 403, as with a stale URL.
            await websocket.close(code=CLOSE_POLICY_VIOLATION)
            return
        record = ConnectionRecord(id=f"conn-{uuid.uuid4().hex[:12]}", opened_at=time.time())
        conn = _Connection(websocket, record)
        try:
            async with conn.send_lock:
                with self._changed:
                    count = len(self._connections) + 1
                    if count <= self.max_connections:
                        self._connections[record.id] = conn
                        self.history.append(record)
                        self._changed.notify_all()
                await websocket.accept()
                if count > self.max_connections:
                    await websocket.send_text(json.dumps(disconnect_message("too_many_websockets")))
                    await websocket.close(code=CLOSE_POLICY_VIOLATION)
                    return
                await websocket.send_text(json.dumps(hello(self._app_id(), count)))
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    record.close_code = message.get("code")
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
                self._on_message(conn, text)
        except (WebSocketDisconnect, RuntimeError) as exc:
            record.close_code = getattr(exc, "code", None)
        finally:
            self._forget(conn)

    def _on_message(self, conn: _Connection, text: str) -> None:
        now = time.time()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            self.stray.append(StrayMessage(conn.record.id, text, "not JSON", now))
            return
        envelope_id = data.get("envelope_id") if isinstance(data, dict) else None
        if not isinstance(envelope_id, str):
            self.stray.append(StrayMessage(conn.record.id, text, "no envelope_id", now))
            return
        with self._lock:
            pending = self._pending.pop(envelope_id, None)
        if pending is None:
            self.stray.append(
                StrayMessage(conn.record.id, text, "no envelope awaits this ack (late?)", now)
            )
            return
        conn.record.acks_received += 1
        if not pending.future.done():
            pending.future.set_result((conn.record.id, data, text))

    def _forget(self, conn: _Connection) -> None:
        """Unregister a closed connection; envelopes it still owed an ack fail at once."""
        with self._changed:
            self._connections.pop(conn.record.id, None)
            conn.record.closed_at = time.time()
            owed = [p for p in self._pending.values() if p.connection_id == conn.record.id]
            for pending in owed:
                del self._pending[pending.envelope.envelope_id]
            self._changed.notify_all()
        for pending in owed:
            if not pending.future.done():
                pending.future.set_exception(
                    ConnectionError("the connection closed before the envelope was acknowledged")
                )

    # -- delivering envelopes (called from other threads) ---------------------------------

    @property
    def connected(self) -> bool:
        """Whether at least one app connection is open (the driver's ``auto`` mode asks)."""
        with self._lock:
            return bool(self._connections)

    def connections(self) -> list[ConnectionRecord]:
        """The open connections, oldest first."""
        with self._lock:
            return [c.record for c in self._connections.values()]

    def wait_for_connections(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``count`` connections are open (a client connects asynchronously)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._connections) >= count, timeout)

    def _pick(self, wait: float) -> _Connection | None:
        """The next connection in turn, waiting ``wait`` seconds for one (Slack buffers an
        envelope briefly while an app reconnects)."""
        with self._changed:
            ready = self._changed.wait_for(
                lambda: bool(self._connections) or self.closing.is_set(), wait
            )
            if not ready or not self._connections:
                return None
            conns = list(self._connections.values())
            self._next += 1
            return conns[self._next % len(conns)]

    def deliver(self, envelope: Envelope, *, timeout: float) -> Delivery:
        """Send ``envelope`` on one connection and wait up to ``timeout`` s for its ack."""
        conn = self._pick(timeout)
        if conn is None:
            return Delivery(envelope, error="no Socket Mode connection is open")
        future: concurrent.futures.Future[tuple[str, dict[str, Any], str]] = (
            concurrent.futures.Future()
        )
        pending = _Pending(envelope, conn.record.id, future)
        with self._lock:
            self._pending[envelope.envelope_id] = pending
        t0 = time.perf_counter()
        try:
            sent = asyncio.run_coroutine_threadsafe(conn.send(envelope.to_json()), conn.loop)
            sent.result(timeout=timeout)
            conn.record.envelopes_sent += 1
            left = max(0.0, timeout - (time.perf_counter() - t0))
            conn_id, ack, raw = future.result(timeout=left)
        except TimeoutError:
            self._drop_pending(envelope)
            return Delivery(
                envelope, conn.record.id, elapsed_s=time.perf_counter() - t0, timed_out=True
            )
        except Exception as exc:  # the socket closed under us, or the loop is gone
            self._drop_pending(envelope)
            return Delivery(
                envelope,
                conn.record.id,
                elapsed_s=time.perf_counter() - t0,
                error=f"{type(exc).__name__}: {exc}",
            )
        return Delivery(
            envelope,
            conn_id,
            acked=True,
            ack=ack,
            raw_ack=raw,
            elapsed_s=time.perf_counter() - t0,
        )

    def _drop_pending(self, envelope: Envelope) -> None:
        with self._lock:
            self._pending.pop(envelope.envelope_id, None)

    # -- asking apps to reconnect -----------------------------------------------------------

    def disconnect(
        self,
        reason: str = "refresh_requested",
        *,
        connection_id: str | None = None,
        close_after: float | None = 2.0,
    ) -> list[str]:
        """Send ``{"type": "disconnect", "reason": ...}`` to one connection (or all), then
        close it after ``close_after`` seconds unless the app has already left; ``None`` keeps
        it open (Slack's ``warning`` comes about 10 s ahead of the refresh)."""
        targets = self._targets(connection_id)
        sent = []
        for conn in targets:
            conn.record.disconnect_reason = reason
            try:
                message = disconnect_message(reason)
                asyncio.run_coroutine_threadsafe(conn.send(message), conn.loop).result(5)
            except Exception as exc:  # closed meanwhile: nothing left to ask
                logger.debug("disconnect to %s not sent: %s", conn.record.id, exc)
                continue
            sent.append(conn.record.id)
            if close_after is not None:
                asyncio.run_coroutine_threadsafe(self._close_later(conn, close_after), conn.loop)
        return sent

    def drop(self, *, connection_id: str | None = None, code: int = 1001) -> list[str]:
        """Close connections without a word, as a network failure or a server restart would."""
        targets = self._targets(connection_id)
        for conn in targets:
            asyncio.run_coroutine_threadsafe(self._close(conn, code), conn.loop).result(5)
        return [c.record.id for c in targets]

    def _targets(self, connection_id: str | None) -> list[_Connection]:
        with self._lock:
            if connection_id is None:
                return list(self._connections.values())
            if connection_id not in self._connections:
                raise SlackError("connection_not_found")
            return [self._connections[connection_id]]

    async def _close_later(self, conn: _Connection, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._close(conn, 1000)

    async def _close(self, conn: _Connection, code: int) -> None:
        if conn.record.closed_at is not None:
            return
        try:
            async with conn.send_lock:
                await conn.websocket.close(code=code)
        except RuntimeError:
            pass  # the app closed first

    def clear_log(self) -> None:
        """Forget stray messages and closed connections (open ones stay listed)."""
        with self._lock:
            self.stray.clear()
            self.history = [c.record for c in self._connections.values()]

    def close(self) -> None:
        """The server is stopping: release every thread waiting for an ack or a connection."""
        with self._changed:
            owed = list(self._pending.values())
            self._pending.clear()
            self._changed.notify_all()
        for pending in owed:
            if not pending.future.done():
                pending.future.set_exception(ConnectionError("the Slack sandbox stopped"))
