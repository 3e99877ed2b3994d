"""``rpc.head`` and ``rpc.compare``: what an Ethereum JSON-RPC endpoint says about its chain.

Both are reads. ``rpc.head`` never fails because the node is down: it answers ``ok: false``
with the reason, so a runbook can branch on it. ``rpc.compare`` measures how far one endpoint
is behind its references and whether it is on their chain.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from incidentbot.infra.rpc import Block, RpcClient, RpcError
from incidentbot.ledger.actions import RetryableError
from incidentbot.runbooks.actions._common import fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext
from incidentbot.runbooks.actions.egress_http import transport
from incidentbot.runbooks.actions.web3._util import HttpUrlText, Timeout, http_url, plural
from incidentbot.runbooks.egress import policy_of

# JSON-RPC "method not found" / "not supported": the node lacks an optional method (anvil has
# no net_peerCount; some providers hide eth_syncing).
_UNSUPPORTED = {-32601, -32004}


class RpcHeadInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrlText
    timeout: Timeout = 5.0


@dataclass
class _Head:
    number: int
    block: Block
    chain_id: int
    syncing: bool | None
    blocks_behind: int | None
    peers: int | None


def _optional(fn: Any) -> Any:
    """The answer of an optional method; None when the node does not support it."""
    try:
        return fn()
    except RpcError as exc:
        if exc.rpc_code in _UNSUPPORTED:
            return None
        raise


def _read_head(rpc: RpcClient) -> _Head:
    number = rpc.block_number()
    # The block at that number, not "latest": the head may move between the two calls.
    block = rpc.block(number) or rpc.block("latest")
    if block is None:
        raise RpcError(
            "bad_response",
            method="eth_getBlockByNumber",
            url=rpc.url,
            detail=f"the node reports head {number} but has no such block",
            retryable=True,
        )
    chain_id = rpc.chain_id()
    sync = _optional(rpc.syncing)
    peers = _optional(rpc.peer_count)
    return _Head(
        number=block.number,
        block=block,
        chain_id=chain_id,
        syncing=None if sync is None else sync.syncing,
        blocks_behind=None if sync is None else sync.blocks_behind,
        peers=peers,
    )


class RpcHead(Action):
    """The head of a JSON-RPC endpoint and how fresh it is.

    Does not raise when the endpoint fails to answer (refused, timed out, an HTTP or JSON-RPC
    error): it returns ``ok: false``, the other fields null, and the reason in ``error``
    (with credentials in the URL masked), so a runbook can branch on ``outputs.ok``. Optional
    methods the node does not support (``net_peerCount`` on anvil) give null rather than an
    error."""

    name = "rpc.head"
    description = (
        "Read a JSON-RPC endpoint's head: block number, hash and age, syncing, peers, chain id "
        "(ok: false with the error when it does not answer)."
    )
    idempotent = True
    Inputs = RpcHeadInputs
    outputs: ClassVar[dict[str, str]] = {
        "ok": "true when the endpoint answered; false (and `error` set) when it did not",
        "head": "the latest block number (eth_blockNumber)",
        "hash": "that block's hash",
        "block_time": "that block's timestamp (UTC, ISO 8601)",
        "age_s": "seconds since that timestamp by the bot's clock (negative: the node's clock "
        "is ahead)",
        "syncing": "eth_syncing: true while the node syncs (null if it does not say)",
        "blocks_behind": "while syncing: highest block minus current block (else null)",
        "peers": "net_peerCount (null when the node does not support it)",
        "chain_id": "eth_chainId",
        "error": "why the endpoint did not answer (null when ok)",
        "error_code": "connect_failed, timeout, http_<status>, rpc_<code> or bad_response",
    }

    def plan(self, inputs: RpcHeadInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_url(self.name, inputs.url)
        return shown(
            ctx,
            f"read the head of {inputs.url} (eth_blockNumber, the block, eth_chainId, "
            f"eth_syncing, net_peerCount; timeout {fmt_seconds(inputs.timeout)})",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        if not o.get("ok"):
            return f"The node did not answer: {o.get('error') or o.get('error_code') or '?'}"
        age = o.get("age_s")
        old = f", {fmt_seconds(float(age))} old" if isinstance(age, (int, float)) else ""
        sync = " (syncing)" if o.get("syncing") else ""
        return f"The node is at block {o.get('head', '?')}{old}{sync}"

    def run(self, inputs: RpcHeadInputs, ctx: ActionContext) -> dict[str, Any]:
        return read_head(ctx, self.name, inputs)


def read_head(ctx: ActionContext, action: str, inputs: RpcHeadInputs) -> dict[str, Any]:
    """The outputs of ``rpc.head`` for ``inputs``, connecting as ``action`` (whose egress
    rules apply)."""
    try:
        policy_of(ctx.services).check_url(action, inputs.url)
        with RpcClient(inputs.url, timeout=inputs.timeout, transport=transport(ctx, action)) as rpc:
            head = _read_head(rpc)
    except RpcError as exc:
        return {
            "ok": False,
            "head": None,
            "hash": None,
            "block_time": None,
            "age_s": None,
            "syncing": None,
            "blocks_behind": None,
            "peers": None,
            "chain_id": None,
            "error": shown(ctx, str(exc).removeprefix(f"{exc.code}: ")),
            "error_code": exc.code,
        }
    return {
        "ok": True,
        "head": head.number,
        "hash": head.block.hash,
        "block_time": _iso(head.block.timestamp),
        "age_s": round(time.time() - head.block.timestamp, 1),
        "syncing": head.syncing,
        "blocks_behind": head.blocks_behind,
        "peers": head.peers,
        "chain_id": head.chain_id,
        "error": None,
        "error_code": None,
    }


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


# -- rpc.compare -------------------------------------------------------------------------------


class RpcCompareInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrlText
    references: list[str] = Field(min_length=1)
    quorum: int | None = Field(default=None, ge=1)
    at_height: int | None = Field(default=None, ge=0)
    timeout: Timeout = 5.0

    @field_validator("references")
    @classmethod
    def _references(cls, value: list[str]) -> list[str]:
        urls = [http_url(v) for v in value]
        if len(set(urls)) != len(urls):
            raise ValueError("a reference is listed twice")
        return urls

    @model_validator(mode="after")
    def _quorum_fits(self) -> RpcCompareInputs:
        if self.quorum is not None and self.quorum > len(self.references):
            raise ValueError(
                f"quorum {self.quorum} is more than the {len(self.references)} references"
            )
        return self

    @property
    def needed(self) -> int:
        """The quorum: as given, else a majority of the references."""
        return self.quorum if self.quorum is not None else len(self.references) // 2 + 1


@dataclass
class _Answer:
    url: str
    head: int | None = None
    error: str | None = None


def _check_all(ctx: ActionContext, action: str, urls: list[str]) -> None:
    policy = policy_of(ctx.services)
    for url in urls:
        policy.check_url(action, url)


def _head_of(ctx: ActionContext, action: str, url: str, timeout: float) -> _Answer:
    try:
        with RpcClient(url, timeout=timeout, transport=transport(ctx, action)) as rpc:
            return _Answer(url, head=rpc.block_number())
    except RpcError as exc:
        return _Answer(url, error=str(exc).removeprefix(f"{exc.code}: "))


def _hash_at(
    ctx: ActionContext, action: str, url: str, height: int, timeout: float
) -> tuple[str | None, str | None]:
    """(hash, None), or (None, why not)."""
    try:
        with RpcClient(url, timeout=timeout, transport=transport(ctx, action)) as rpc:
            block = rpc.block(height)
    except RpcError as exc:
        return None, str(exc).removeprefix(f"{exc.code}: ")
    if block is None:
        return None, f"has no block {height}"
    return block.hash, None


class RpcCompare(Action):
    """How far ``url`` is behind its references, and whether it is on their chain.

    Every endpoint is asked for its head at once. The reference head is the highest block
    that at least ``quorum`` references have reached (with the default majority quorum:
    the median for an odd number of references, the lower median for an even one), so one
    reference racing ahead or stuck does not move it. ``lag`` is that minus the head of
    ``url``: positive when it is behind.

    Then the block hash at one height (``at_height``, default: the lowest head among all
    that answered) is asked of every endpoint that answered. ``agree`` is true when at least
    ``quorum`` references have the same hash as ``url`` there.

    References that do not answer are listed in ``unhealthy_references`` and left out. When
    fewer than ``quorum`` answer, or ``url`` itself does not, there is nothing to compare:
    the step fails with a retryable error saying which endpoints were down."""

    name = "rpc.compare"
    description = (
        "Compare an endpoint's head and block hash with reference endpoints (lag behind "
        "their quorum head, agreement on the chain)."
    )
    idempotent = True
    Inputs = RpcCompareInputs
    outputs: ClassVar[dict[str, str]] = {
        "lag": "reference_head - head: blocks behind (negative: ahead)",
        "head": "the head of `url`",
        "reference_head": "the highest block at least `quorum` references reached",
        "median_head": "the median head of the references that answered",
        "heads": "head per endpoint (URLs masked)",
        "height": "the height the hashes were compared at",
        "agree": "true when at least `quorum` references have the hash of `url` at `height`",
        "hash": "the hash of `url` at `height`",
        "hashes": "hash at `height` per endpoint (null where it has none)",
        "reference_hash": "the hash at `height` that at least `quorum` references share (or null)",
        "answered": "how many references answered",
        "quorum": "the quorum used",
        "unhealthy_references": "references that did not answer: [{url, error}]",
    }

    def plan(self, inputs: RpcCompareInputs, ctx: ActionContext) -> str:
        _check_all(ctx, self.name, [inputs.url, *inputs.references])
        at = f"block {inputs.at_height}" if inputs.at_height is not None else "the lowest head"
        return shown(
            ctx,
            f"compare the head of {inputs.url} with {plural(len(inputs.references), 'reference')}"
            f" ({', '.join(inputs.references)}; quorum {inputs.needed}) and the block hashes at "
            f"{at}",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        lag = o.get("lag")
        if not isinstance(lag, int):
            where = "behind the references: unknown"
        elif lag > 0:
            where = f"{plural(lag, 'block')} behind the references"
        elif lag < 0:
            where = f"{plural(-lag, 'block')} ahead of the references"
        else:
            where = "level with the references"
        agree = "agrees" if o.get("agree") else "does not agree"
        return f"The node is {where} and {agree} on the hash at {o.get('height', '?')}"

    def run(self, inputs: RpcCompareInputs, ctx: ActionContext) -> dict[str, Any]:
        urls = [inputs.url, *[u for u in inputs.references if u != inputs.url]]
        _check_all(ctx, self.name, urls)
        with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
            answers = dict(
                zip(
                    urls,
                    pool.map(lambda u: _head_of(ctx, self.name, u, inputs.timeout), urls),
                    strict=True,
                )
            )
        target = answers[inputs.url]
        refs = [answers[u] for u in inputs.references]
        up = [a for a in refs if a.head is not None]
        down = [a for a in refs if a.head is None]
        needed = inputs.needed
        if target.head is None:
            raise RetryableError(shown(ctx, f"{inputs.url} did not answer: {target.error}"))
        if len(up) < needed:
            why = "; ".join(f"{a.url}: {a.error}" for a in down)
            raise RetryableError(
                shown(
                    ctx,
                    f"only {len(up)} of {plural(len(refs), 'reference')} answered, the quorum "
                    f"is {needed}: {why}",
                )
            )
        ref_heads = sorted((a.head for a in up if a.head is not None), reverse=True)
        reference_head = ref_heads[needed - 1]
        height = inputs.at_height
        if height is None:
            height = min([target.head, *ref_heads])
        asked = [inputs.url, *[a.url for a in up if a.url != inputs.url]]
        with ThreadPoolExecutor(max_workers=min(8, len(asked))) as pool:
            found = dict(
                zip(
                    asked,
                    pool.map(lambda u: _hash_at(ctx, self.name, u, height, inputs.timeout), asked),
                    strict=True,
                )
            )
        own_hash, own_error = found[inputs.url]
        if own_hash is None:
            raise RetryableError(
                shown(ctx, f"{inputs.url} gave no block hash at {height}: {own_error}")
            )
        unhealthy = [{"url": shown(ctx, a.url), "error": shown(ctx, a.error or "")} for a in down]
        for a in up:
            block_hash, error = found[a.url]
            if block_hash is None and error and not error.startswith("has no block"):
                unhealthy.append({"url": shown(ctx, a.url), "error": shown(ctx, error)})
        ref_hashes = [found[a.url][0] for a in up]
        same = sum(1 for h in ref_hashes if h is not None and h.lower() == own_hash.lower())
        counts = Counter(h.lower() for h in ref_hashes if h is not None)
        return {
            "lag": reference_head - target.head,
            "head": target.head,
            "reference_head": reference_head,
            "median_head": statistics.median_low(ref_heads),
            "heads": {shown(ctx, u): answers[u].head for u in urls},
            "height": height,
            "agree": same >= needed,
            "hash": own_hash,
            "hashes": {shown(ctx, u): found[u][0] if u in found else None for u in urls},
            "reference_hash": next((h for h, n in counts.most_common(1) if n >= needed), None),
            "answered": len(up),
            "quorum": needed,
            "unhealthy_references": unhealthy,
        }
