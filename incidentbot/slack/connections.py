"""The bot's kept-alive HTTP/1.1 connections to Slack: a small bounded pool over http.client.

:class:`SlackConnections` holds the idle connections of each origin (scheme, host, port) and
lends one per request; at most ``size`` are open at once, and a request beyond waits for one
to be returned, within its timeout. http.client is what urllib itself sends with, so requests
and answers are exactly those of slack_sdk's client, only without a new connection (and TLS
handshake) per call.

**What is sent twice.** An idle connection the server has closed (its FIN or reset already
arrived) is noticed before it is used, and a new one is opened instead. A request is sent
again at most once, and only when not one byte of it reached the operating system: the
connection was refused, or the first ``send`` failed. A request that may have reached the
server (its answer lost, the connection dropped after it went out, a timeout) is not repeated:
whether to try it again is the caller's decision (the ledger's, which first looks for what the
lost call did).
"""

from __future__ import annotations

import base64
import functools
import http.client
import logging
import select
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

log = logging.getLogger(__name__)

# Connections the bot keeps open to Slack: the ledger's worker threads plus the threads that
# answer Slack's requests (forms, ephemeral messages) and the scheduler's jobs.
REQUEST_THREADS = 16
# How long an idle connection is kept. Slack's front ends keep idle connections longer than
# this; a server that closes one sooner is noticed before the connection is reused.
KEEPALIVE_S = 30.0

Origin = tuple[str, str, int]


class Answer:
    """One HTTP answer: status, headers (an ``email.message.Message``, as urllib gives them)
    and body."""

    def __init__(self, response: http.client.HTTPResponse, body: bytes) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = body


class _Tracked(http.client.HTTPConnection):
    """A connection that knows whether the current request's bytes left the process.

    http.client sends a request's head and body with two ``sendall`` calls (two packets, each
    waking the server; and ``sendall`` says nothing of what it sent before failing). Here they
    are held until the answer is awaited, then sent together with ``send``, counting."""

    wrote = False
    origin: Origin
    idle_since = 0.0
    _connecting = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = bytearray()

    def connect(self) -> None:
        self._connecting = True  # a proxy's CONNECT is sent at once: its answer is read next
        try:
            super().connect()
        finally:
            self._connecting = False
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]

    def send(self, data: Any) -> None:
        if self._connecting or not isinstance(data, bytes | bytearray):
            self._flush()
            self.wrote = True
            super().send(data)
        else:
            self._pending += data

    def getresponse(self) -> http.client.HTTPResponse:
        self._flush()
        return super().getresponse()

    def close(self) -> None:
        self._pending.clear()
        super().close()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self.sock is None:
            self.connect()
        view = memoryview(bytes(self._pending))
        self._pending.clear()
        while view:
            sent = self.sock.send(view)  # type: ignore[union-attr]
            if sent:
                self.wrote = True
            view = view[sent:]

    def stale(self, keepalive_s: float) -> bool:
        """Closed by the server while idle (its FIN or reset is readable), or idle too long."""
        if self.sock is None or time.monotonic() - self.idle_since > keepalive_s:
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))


class _TrackedTLS(_Tracked, http.client.HTTPSConnection):
    pass


class SlackConnections:
    """The pool: at most ``size`` connections open at once, idle ones kept ``keepalive_s``."""

    def __init__(
        self,
        size: int = REQUEST_THREADS,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self.size = size
        self._ssl = ssl_context
        self._proxy = urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        self._proxy_auth = _proxy_authorization(self._proxy)
        self._keepalive_s = keepalive_s
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: dict[Origin, list[_Tracked]] = {}
        self.opened = 0  # connections opened so far, failed attempts included

    def post(self, url: str, headers: dict[str, str], body: bytes | None, timeout: float) -> Answer:
        """POST ``body`` to ``url``; raises what http.client raises (``OSError``,
        ``http.client.HTTPException``), ``TimeoutError`` too when no connection frees in time."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        origin = (scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        if self._proxy is not None and scheme == "http":
            target = url  # a plain HTTP proxy is sent the whole URL
            headers = {**headers, **self._proxy_auth}
        if not self._slots.acquire(timeout=timeout):
            raise TimeoutError(f"no free connection to Slack in {timeout}s")
        try:
            for attempt in (1, 2):
                conn = self._take(origin, timeout)
                try:
                    conn.request("POST", target, body=body, headers=headers)
                    response = conn.getresponse()
                    answer = Answer(response, response.read())
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    if attempt == 2 or conn.wrote or isinstance(exc, TimeoutError):
                        raise
                    # Refused, or reset before any byte of the request left: never seen.
                    log.info("Slack connection failed before sending (%s); a new one", exc)
                    continue
                if response.will_close:
                    conn.close()
                else:
                    self._give_back(conn)
                return answer
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._slots.release()

    def _take(self, origin: Origin, timeout: float) -> _Tracked:
        conn: _Tracked | None = None
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle and conn is None:
                conn = idle.pop()
                if conn.stale(self._keepalive_s):
                    conn.close()
                    conn = None
        if conn is None:
            conn = self._open(origin, timeout)
        elif conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.timeout = timeout
        conn.wrote = False
        return conn

    def _give_back(self, conn: _Tracked) -> None:
        """Idle again; the idle connections unused for ``keepalive_s`` are closed."""
        conn.idle_since = now = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(conn.origin, [])
            expired = [c for c in idle if now - c.idle_since > self._keepalive_s]
            idle[:] = [c for c in idle if now - c.idle_since <= self._keepalive_s]
            idle.append(conn)  # the last used is lent first: the others can expire
        for old in expired:
            old.close()

    def _open(self, origin: Origin, timeout: float) -> _Tracked:
        scheme, host, port = origin
        with self._lock:
            self.opened += 1
        if self._proxy is not None:  # an HTTP proxy: CONNECT for https, the whole URL for http
            proxy_host, proxy_port = self._proxy.hostname or "", self._proxy.port or 8080
            conn = self._connection(scheme, proxy_host, proxy_port, timeout)
            if scheme == "https":
                conn.set_tunnel(host, port, headers=self._proxy_auth)
        else:
            conn = self._connection(scheme, host, port, timeout)
        conn.origin = origin
        return conn

    def _connection(self, scheme: str, host: str, port: int, timeout: float) -> _Tracked:
        if scheme == "https":
            context = self._ssl or _system_certificates()
            return _TrackedTLS(host, port, timeout=timeout, context=context)
        return _Tracked(host, port, timeout=timeout)

    def close(self) -> None:
        """Close the idle connections (the pool stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _proxy_authorization(proxy: SplitResult | None) -> dict[str, str]:
    if proxy is None or not proxy.username:
        return {}
    pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}


@functools.cache
def _system_certificates() -> ssl.SSLContext:
    """What urllib verifies Slack's certificate with (the system's certificates, HTTP/1.1
    announced); made once per process instead of once per connection."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def pool_size(workers: int) -> int:
    """Connections for a process running ``workers`` ledger threads."""
    return workers + REQUEST_THREADS
