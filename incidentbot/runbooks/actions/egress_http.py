"""The egress policy for actions that speak HTTP (httpx): a transport that checks every
request and connects to the address it checked.

:class:`PinnedTransport` resolves the request's host once through the policy
(:meth:`~incidentbot.runbooks.egress.EgressPolicy.connect_address`), then sends the request
to that address with the original ``Host`` header and, for https, the original name as SNI
and for certificate verification. A DNS answer that changes after the check (rebinding)
therefore changes nothing. Every request goes through it, so each redirect hop a caller
follows is checked on its own.

Clients built here ignore proxy settings from the environment: a proxy would make the
connection, not us, and the checked address would mean nothing.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx

from incidentbot.runbooks.actions.base import ActionContext
from incidentbot.runbooks.egress import SCHEMES, EgressPolicy, EgressRefused, policy_of

DEFAULT_PORTS = {"http": 80, "https": 443}


class PinnedTransport(httpx.BaseTransport):
    """Sends each request to the address the egress policy checked for its host."""

    def __init__(self, policy: EgressPolicy, action: str, **options: Any) -> None:
        self._policy = policy
        self._action = action
        self._inner = httpx.HTTPTransport(**options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in SCHEMES:
            raise EgressRefused(
                f"the {url.scheme} scheme is not allowed by the egress policy (only http and https)"
            )
        host = url.raw_host.decode("ascii")
        port = url.port or DEFAULT_PORTS[url.scheme]
        try:
            address = self._policy.connect_address(self._action, host, port)
        except socket.gaierror as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from None
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,  # carries Host: the original name
            stream=request.stream,
            extensions=extensions,
        )
        return self._inner.handle_request(pinned)

    def close(self) -> None:
        self._inner.close()


def transport(ctx: ActionContext, action: str) -> PinnedTransport:
    """The transport for ``action``'s requests under the policy of ``ctx``."""
    return PinnedTransport(policy_of(ctx.services), action)


def client(ctx: ActionContext, action: str, **options: Any) -> httpx.Client:
    """An httpx client whose every request obeys the egress policy. It never follows
    redirects itself: a caller that follows them sends each hop (see ``http.request``)."""
    options.setdefault("follow_redirects", False)
    return httpx.Client(transport=transport(ctx, action), trust_env=False, **options)
