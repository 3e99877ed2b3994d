"""slack_sdk's clients, sending over the bot's kept-alive connections to Slack.

slack_sdk's ``WebClient`` sends every call with ``urllib``: a new TCP connection (and, against
slack.com, a TLS handshake) per call. :class:`PooledWebClient` is that same client with one
method replaced, the one that sends an already encoded request
(``BaseClient._perform_urllib_http_request_internal``): the SDK still encodes each method's
arguments, builds :class:`~slack_sdk.web.SlackResponse` and raises ``SlackApiError`` exactly as
before, but the request goes over :class:`~incidentbot.slack.connections.SlackConnections`, the
pool shared by every client of the process (the ledger's
:class:`~incidentbot.slack.chat.SlackChat`, Bolt's per-request clients and ``respond()``).
What the pool sends twice, and what never: see :mod:`incidentbot.slack.connections`.
"""

from __future__ import annotations

import email.message
import http.client
import ssl
from typing import Any
from urllib.request import Request

from slack_bolt.context import BoltContext
from slack_bolt.context.respond import Respond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk import WebClient
from slack_sdk.errors import SlackRequestError
from slack_sdk.webhook import WebhookClient, WebhookResponse

from incidentbot.slack.connections import SlackConnections


class PooledWebClient(WebClient):
    """slack_sdk's ``WebClient``, sending over :class:`SlackConnections` (its own unless one
    is given). Nothing is retried here beyond the pool's one resend of a request that never left:
    the SDK's retry handlers would resend a call whose answer was lost, so none are installed
    by default."""

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
    both spellings, as slack_sdk gives it), body and the headers as a message (content type,
    charset). Failures are raised as urllib raises them (``OSError`` subclasses)."""
    if not url.lower().startswith("http"):
        raise SlackRequestError(f"Invalid URL detected: {url}")
    headers = {k: str(v) for k, v in req.header_items() if k.lower() != "content-length"}
    try:
        answer = connections.post(url, headers, req.data, float(timeout))  # type: ignore[arg-type]
    except http.client.HTTPException as exc:
        if isinstance(exc, OSError):
            raise
        raise ConnectionResetError(f"bad answer from Slack: {type(exc).__name__}") from None
    response_headers = dict(answer.headers)
    retry_after = answer.headers.get("retry-after")
    if answer.status == 429 and retry_after is not None:
        response_headers["Retry-After"] = response_headers["retry-after"] = retry_after
    return answer.status, response_headers, answer.body, answer.headers
