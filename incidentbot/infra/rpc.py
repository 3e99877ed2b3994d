"""A small Ethereum JSON-RPC client over HTTP: the head, blocks, the chain id, sync status.

Node URLs often carry an API key (``https://mainnet.example/v3/<key>``), so every error names
the method and the URL with secrets masked (:func:`incidentbot.ledger.redact_text`), never the
raw URL. Errors are :class:`RpcError` (an :class:`~incidentbot.ports.ExternalError`):
``retryable`` is true for a refused connection, a timeout, HTTP 429/5xx and a provider's
"limit exceeded" answer, false for an answer that retrying cannot change (an unknown method, a
bad parameter, a reply that is not JSON-RPC).

The methods this client names are reads; :meth:`RpcClient.call` sends anything.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from incidentbot.ledger.redact import redact_text
from incidentbot.ports import ExternalError

BlockTag = Literal["latest", "earliest", "pending", "safe", "finalized"]
_TAGS = {"latest", "earliest", "pending", "safe", "finalized"}
# JSON-RPC error codes a provider uses for "slow down" (EIP-1474 "limit exceeded").
_RETRYABLE_RPC_CODES = {-32005}


class RpcError(ExternalError):
    """A JSON-RPC call failed.

    ``code`` is ``connect_failed``, ``timeout``, ``transport_error``, ``http_<status>``,
    ``rpc_<json-rpc error code>`` or ``bad_response``; ``method`` the JSON-RPC method;
    ``url`` the endpoint with secrets masked; ``sent`` whether the request may have reached
    the node; ``rpc_code`` the JSON-RPC error code when the node answered with an error.
    """

    def __init__(
        self,
        code: str,
        *,
        method: str,
        url: str,
        detail: str,
        retryable: bool,
        sent: bool = True,
        rpc_code: int | None = None,
        retry_after: float | None = None,
    ):
        self.method = method
        self.url = redact_text(url)
        self.detail = redact_text(detail)
        self.sent = sent
        self.rpc_code = rpc_code
        super().__init__(
            code,
            f"{method} at {self.url}: {self.detail}",
            retryable=retryable,
            retry_after=retry_after,
        )


@dataclass(frozen=True)
class Block:
    """What runbooks need of a block header."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int  # seconds since the epoch, as the block says

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)


@dataclass(frozen=True)
class SyncStatus:
    """``eth_syncing``: not syncing, or how far the node got (block numbers)."""

    syncing: bool
    starting_block: int | None = None
    current_block: int | None = None
    highest_block: int | None = None

    @property
    def blocks_behind(self) -> int | None:
        if not self.syncing or self.current_block is None or self.highest_block is None:
            return None
        return max(0, self.highest_block - self.current_block)


class RpcClient:
    """JSON-RPC over HTTP to one node (or one load balancer in front of several)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = url
        self.masked_url = redact_text(url)
        self._ids = itertools.count(1)
        self._http = httpx.Client(
            timeout=timeout,
            headers={"Content-Type": "application/json", **(headers or {})},
            transport=transport,
            # A given transport decides where to connect (the runbooks' egress policy pins
            # addresses): a proxy from the environment must not take that over.
            trust_env=transport is None,
        )

    def __repr__(self) -> str:
        return f"RpcClient({self.masked_url!r})"

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- generic ----------------------------------------------------------------------------

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        """Send one JSON-RPC request and return its ``result`` (raise :class:`RpcError`)."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        response = self._post(method, body)
        if response.status_code != 200:
            code = response.status_code
            retryable = code in (408, 429) or code >= 500
            raise self._error(
                f"http_{code}",
                method,
                f"HTTP {code} {response.reason_phrase}".rstrip(),
                retryable=retryable,
                retry_after=_retry_after(response) if retryable else None,
            )
        try:
            payload = response.json()
        except ValueError:
            raise self._error(
                "bad_response", method, f"not JSON: {response.text[:120]!r}", retryable=False
            ) from None
        if not isinstance(payload, dict):
            raise self._error("bad_response", method, "not a JSON-RPC response", retryable=False)
        error = payload.get("error")
        if error is not None:
            rpc_code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            raise self._error(
                f"rpc_{rpc_code}",
                method,
                f"error {rpc_code}: {message}",
                retryable=rpc_code in _RETRYABLE_RPC_CODES,
                rpc_code=rpc_code if isinstance(rpc_code, int) else None,
            )
        if "result" not in payload:
            raise self._error("bad_response", method, "no result and no error", retryable=False)
        return payload["result"]

    # -- typed reads ------------------------------------------------------------------------

    def block_number(self) -> int:
        """The node's head (``eth_blockNumber``)."""
        return self._int("eth_blockNumber", self.call("eth_blockNumber"))

    def chain_id(self) -> int:
        return self._int("eth_chainId", self.call("eth_chainId"))

    def block(self, number: int | BlockTag = "latest") -> Block | None:
        """The block at ``number`` (or a tag such as ``latest``); None if the node has none."""
        if isinstance(number, bool) or not (isinstance(number, int) or number in _TAGS):
            raise ValueError(f"block number must be an int >= 0 or one of {sorted(_TAGS)}")
        if isinstance(number, int) and number < 0:
            raise ValueError("block number must be >= 0")
        tag = hex(number) if isinstance(number, int) else number
        raw = self.call("eth_getBlockByNumber", [tag, False])
        if raw is None:
            return None
        method = "eth_getBlockByNumber"
        if not isinstance(raw, dict):
            raise self._error("bad_response", method, "block is not an object", retryable=False)
        try:
            return Block(
                number=self._int(method, raw["number"]),
                hash=str(raw["hash"]),
                parent_hash=str(raw["parentHash"]),
                timestamp=self._int(method, raw["timestamp"]),
            )
        except KeyError as exc:
            raise self._error(
                "bad_response", method, f"block without {exc.args[0]}", retryable=False
            ) from None

    def syncing(self) -> SyncStatus:
        method = "eth_syncing"
        raw = self.call(method)
        if raw is False or raw is None:
            return SyncStatus(syncing=False)
        if not isinstance(raw, dict):
            raise self._error("bad_response", method, f"unexpected {raw!r}", retryable=False)

        def field(name: str) -> int | None:
            value = raw.get(name)
            return None if value is None else self._int(method, value)

        return SyncStatus(
            syncing=True,
            starting_block=field("startingBlock"),
            current_block=field("currentBlock"),
            highest_block=field("highestBlock"),
        )

    def peer_count(self) -> int:
        return self._int("net_peerCount", self.call("net_peerCount"))

    def client_version(self) -> str:
        return str(self.call("web3_clientVersion"))

    # -- internals --------------------------------------------------------------------------

    def _post(self, method: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self._http.post(self.url, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self._error(
                "connect_failed", method, _text(exc, "cannot connect"), retryable=True, sent=False
            ) from exc
        except httpx.TimeoutException as exc:
            raise self._error(
                "timeout", method, _text(exc, "no answer in time"), retryable=True
            ) from exc
        except httpx.TransportError as exc:
            raise self._error(
                "transport_error", method, _text(exc, type(exc).__name__), retryable=True
            ) from exc

    def _int(self, method: str, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value, 16) if value.lower().startswith("0x") else int(value)
            except ValueError:
                pass
        raise self._error("bad_response", method, f"not a quantity: {value!r}", retryable=False)

    def _error(
        self,
        code: str,
        method: str,
        detail: str,
        *,
        retryable: bool,
        sent: bool = True,
        rpc_code: int | None = None,
        retry_after: float | None = None,
    ) -> RpcError:
        return RpcError(
            code,
            method=method,
            url=self.url,
            detail=detail,
            retryable=retryable,
            sent=sent,
            rpc_code=rpc_code,
            retry_after=retry_after,
        )


def _text(exc: Exception, fallback: str) -> str:
    return str(exc).strip() or fallback


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
