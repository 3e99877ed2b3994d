"""Slack Web API calls over a pool of kept-alive HTTP/1.1 connections.

slack_sdk's ``WebClient`` sends every call with ``urllib``: a new TCP connection (and, against
slack.com, a TLS handshake) per call. :class:`PooledWebClient` is that same client with one
method replaced, the one that sends an already encoded request
(``BaseClient._perform_urllib_http_request_internal``): the SDK still encodes each method's
arguments, builds :class:`~slack_sdk.web.SlackResponse` and raises ``SlackApiError`` exactly as
before, but the bytes travel over :class:`SlackConnections`, a bounded httpcore pool shared by
every client of the process (the ledger's :class:`~incidentbot.slack.chat.SlackChat` and Bolt's).

A connection the server closed while idle is noticed before it is used (the pool checks an
idle socket for the server's FIN) and a new one is opened. A call is sent again at most once,
and only when not one byte of it was handed to the operating system (the connection was
refused, or was found reset at the first write): a call that may have reached Slack, a
``chat.postMessage`` above all, is never repeated here. Whether to try again is the ledger's
decision, which first looks for the effect (see docs/slack.md).
"""

from __future__ import annotations

import email.message
import logging
import ssl
import threading
from typing import Any
from urllib.error import URLError
from urllib.request import Request

import httpcore
from slack_bolt.context import BoltContext
from slack_bolt.context.respond import Respond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk import WebClient
from slack_sdk.errors import SlackRequestError
from slack_sdk.webhook import WebhookClient, WebhookResponse

log = logging.getLogger(__name__)

# Connections the bot keeps open to Slack: the ledger's worker threads plus the threads that
# answer Slack's requests (forms, ephemeral messages) and the scheduler's jobs.
REQUEST_THREADS = 16
# How long an idle connection is kept. Slack's front ends keep idle connections longer than
# this; a server that closes one sooner is noticed before the connection is reused.
KEEPALIVE_S = 30.0


class _Progress(threading.local):
    """Per thread: whether any byte of the request being sent was handed to the kernel."""

    wrote = False


class _Stream(httpcore.NetworkStream):
    """A connection that records, in ``progress``, whether the request's bytes left the
    process. Plain TCP and TLS over it are written here with ``send`` so that a failure at the
    first ``send`` is known to have written nothing; TLS inside TLS (a TLS proxy) is written
    by httpcore, and counted as written as soon as it is tried."""

    def __init__(self, inner: httpcore.NetworkStream, progress: _Progress, direct: bool) -> None:
        self._inner = inner
        self._progress = progress
        self._direct = direct

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        sock = self._inner.get_extra_info("socket") if self._direct else None
        if sock is None:
            self._progress.wrote = True
            self._inner.write(buffer, timeout)
            return
        try:
            while buffer:
                sock.settimeout(timeout)
                sent = sock.send(buffer)
                if sent:
                    self._progress.wrote = True
                buffer = buffer[sent:]
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.WriteError(exc) from exc

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        plain = self._inner.get_extra_info("ssl_object") is None
        inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _Stream(inner, self._progress, self._direct and plain)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's own sockets, wrapped in :class:`_Stream`; counts the connections opened."""

    def __init__(self, progress: _Progress) -> None:
        self._inner = httpcore.SyncBackend()
        self._progress = progress
        self._lock = threading.Lock()
        self.opened = 0

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        with self._lock:
            self.opened += 1
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream, self._progress, direct=True)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class SlackConnections:
    """The pool of kept-alive connections to Slack: at most ``size`` open at once (a call
    beyond waits for one to be free, up to its timeout)."""

    def __init__(
        self,
        size: int = REQUEST_THREADS,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._progress = _Progress()
        self._backend = _Backend(self._progress)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            proxy=httpcore.Proxy(proxy) if proxy else None,
            max_connections=size,
            max_keepalive_connections=size,
            keepalive_expiry=keepalive_s,
            network_backend=self._backend,
        )
        self.size = size

    @property
    def opened(self) -> int:
        """How many connections were opened so far (attempts included)."""
        return self._backend.opened

    def post(self, url: str, headers: list[tuple[str, str]], body: bytes | None, timeout: float):
        """Send one request; again once when the first attempt provably wrote nothing."""
        limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        for attempt in (1, 2):
            self._progress.wrote = False
            try:
                return self._pool.request(
                    "POST", url, headers=headers, content=body, extensions={"timeout": limits}
                )
            except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
                if attempt == 2 or self._progress.wrote:
                    raise
                # Refused, or reset before any byte of the request left: Slack never saw it.
                log.info("Slack connection failed before sending (%s); trying a new one", exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._pool.close()


class PooledWebClient(WebClient):
    """slack_sdk's ``WebClient``, sending over :class:`SlackConnections` (its own unless one
    is given). It never retries by itself beyond the one safe resend above: the SDK's retry
    handlers would resend a call whose answer was lost, so none are installed by default."""

    def __init__(self, *args: Any, connections: SlackConnections | None = None, **kwargs: Any):
        kwargs.setdefault("retry_handlers", [])
        super().__init__(*args, **kwargs)
        self.connections = connections or SlackConnections(ssl_context=self.ssl, proxy=self.proxy)

    def sibling(self, other: WebClient) -> PooledWebClient:
        """A pooled client configured like ``other`` (Bolt's per-request client), on this
        client's connections."""
        return PooledWebClient(
            token=other.token,
            base_url=other.base_url,
            timeout=other.timeout,
            ssl=other.ssl,
            proxy=other.proxy,
            headers=dict(other.headers),
            team_id=other.default_params.get("team_id"),
            logger=other.logger,
            retry_handlers=list(other.retry_handlers),
            connections=self.connections,
        )

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        # What urllib would return: {status, headers, body}, an HTTP error included (the SDK's
        # caller turns a status other than 200 or ``ok: false`` into SlackApiError).
        status, headers, content, kind = _exchange(self.connections, url, req, self.timeout)
        if kind.get_content_type() == "application/gzip":  # admin.analytics.getFile
            return {"status": status, "headers": headers, "body": content}
        body = content.decode(kind.get_content_charset() or "utf-8")
        return {"status": status, "headers": headers, "body": body}


class PooledWebhookClient(WebhookClient):
    """slack_sdk's client for response URLs, over :class:`SlackConnections` (no retries)."""

    def __init__(self, *args: Any, connections: SlackConnections, **kwargs: Any):
        kwargs.setdefault("retry_handlers", [])
        super().__init__(*args, **kwargs)
        self.connections = connections

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        status, headers, content, kind = _exchange(self.connections, url, req, self.timeout)
        body = content.decode(kind.get_content_charset() or "utf-8")
        return WebhookResponse(url=url, status_code=status, body=body, headers=headers)


class PooledRespond(Respond):
    """Bolt's ``respond()`` (a message through the request's response URL), over
    :class:`SlackConnections`."""

    def __init__(
        self,
        *,
        response_url: str | None,
        connections: SlackConnections,
        proxy: str | None = None,
        ssl: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(response_url=response_url, proxy=proxy, ssl=ssl)
        self.connections = connections

    def __call__(self, text: str | dict[str, Any] = "", *args: Any, **kwargs: Any) -> Any:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        # Bolt's own message building, as its Respond does (same arguments, same order).
        if isinstance(text, dict):
            message = _build_message(**text)
        else:
            message = _build_message(text, *args, **kwargs)
        client = PooledWebhookClient(
            url=self.response_url, proxy=self.proxy, ssl=self.ssl, connections=self.connections
        )
        return client.send_dict(message)


def share_connections(context: BoltContext, client: PooledWebClient) -> None:
    """Give one Bolt request's listeners ``client``'s connections: Bolt makes them a plain
    ``WebClient`` and ``respond()``, each opening a connection per call."""
    own = client.sibling(context.client)
    context["client"] = own
    if context.response_url:
        context["respond"] = PooledRespond(
            response_url=context.response_url,
            connections=own.connections,
            proxy=own.proxy,
            ssl=own.ssl,
        )


def _exchange(
    connections: SlackConnections, url: str, req: Request, timeout: float
) -> tuple[int, dict[str, str], bytes, email.message.Message]:
    """Send the request urllib would have sent; its status, headers (a 429's Retry-After under
    both spellings, as slack_sdk gives it), body and content type. Connection failures are
    raised as urllib raises them (``OSError`` subclasses)."""
    if not url.lower().startswith("http"):
        raise SlackRequestError(f"Invalid URL detected: {url}")
    headers = [(k, str(v)) for k, v in req.header_items() if k.lower() != "content-length"]
    try:
        resp = connections.post(url, headers, req.data, float(timeout))  # type: ignore[arg-type]
    except httpcore.TimeoutException as exc:
        raise TimeoutError(f"no answer in {timeout}s ({type(exc).__name__})") from None
    except httpcore.ConnectError as exc:
        raise URLError(f"could not connect: {exc}") from None
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise ConnectionResetError(f"connection lost: {type(exc).__name__}") from None
    except (httpcore.ProxyError, httpcore.UnsupportedProtocol) as exc:
        raise URLError(str(exc)) from None
    response_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in resp.headers}
    lower = {k.lower(): v for k, v in response_headers.items()}
    if resp.status == 429 and "retry-after" in lower:
        response_headers["Retry-After"] = response_headers["retry-after"] = lower["retry-after"]
    kind = email.message.Message()
    kind["content-type"] = lower.get("content-type", "")
    return resp.status, response_headers, resp.content, kind


def pool_size(workers: int) -> int:
    """Connections for a process running ``workers`` ledger threads."""
    return workers + REQUEST_THREADS
