"""``rpc.heads``: every node of a fleet at once, ranked — who is healthy, who is behind.

A failover or a restart decides from the whole picture: the head a quorum of nodes reached,
each node's lag behind it, how old each node's newest block is, and which healthy node is
best. Nodes are read concurrently; a node that does not answer is unhealthy, never an error.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.runbooks.actions._common import Seconds, fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext
from incidentbot.runbooks.actions.web3._util import Timeout, http_url
from incidentbot.runbooks.actions.web3.rpc import RpcHeadInputs, read_head
from incidentbot.runbooks.egress import policy_of


class HeadsInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: dict[str, Any] = Field(
        min_length=1, description="name -> RPC URL, or name -> {url: …} (e.g. vars.nodes)"
    )
    exclude: list[str] = Field(default_factory=list, description="never the `best` node")
    quorum: int | None = Field(default=None, ge=1, description="default: a majority")
    max_lag: int = Field(default=16, ge=0, description="blocks behind that make a node unhealthy")
    max_age: Seconds = Field(default=30.0, description="newest block older than this: unhealthy")
    timeout: Timeout = 5.0

    @field_validator("nodes")
    @classmethod
    def _urls(cls, value: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, str] = {}
        for name, spec in value.items():
            url = spec.get("url") if isinstance(spec, dict) else spec
            if not isinstance(url, str):
                raise ValueError(f"node {name!r} has no url")
            out[str(name)] = http_url(url)
        return out


class RpcHeads(Action):
    """Read every node's head and rank them.

    ``reference_head`` is the highest head at least ``quorum`` nodes (that answered) reached;
    a node is healthy when it answered, is at most ``max_lag`` blocks behind that and its
    newest block is at most ``max_age`` old. ``healthy`` lists the healthy nodes, highest head
    first; ``best`` is the first of them not in ``exclude`` (null when there is none)."""

    name = "rpc.heads"
    description = "Read several nodes' heads at once: lag behind the quorum, age, who is healthy."
    idempotent = True
    Inputs = HeadsInputs
    outputs: ClassVar[dict[str, str]] = {
        "nodes": "per node: ok, head, age_s, lag, healthy, why (unhealthy: the reason), error",
        "reference_head": "the highest head at least `quorum` nodes reached (null: too few)",
        "healthy": "the healthy nodes, highest head first",
        "best": "the first healthy node not in `exclude` (null when none)",
        "best_head": "its head",
        "answered": "how many nodes answered",
        "quorum": "the quorum used",
    }

    def plan(self, inputs: HeadsInputs, ctx: ActionContext) -> str:
        policy = policy_of(ctx.services)
        for url in inputs.nodes.values():
            policy.check_url(self.name, url)
        names = ", ".join(inputs.nodes)
        return shown(
            ctx,
            f"read the heads of {names} and rank them (unhealthy: no answer, more than "
            f"{inputs.max_lag} blocks behind, or newest block older than "
            f"{fmt_seconds(inputs.max_age)})",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        healthy, nodes = o.get("healthy"), o.get("nodes")
        good = len(healthy) if isinstance(healthy, list) else "?"
        total = len(nodes) if isinstance(nodes, (dict, list)) else "?"
        best = f"; best is {o['best']} at block {o.get('best_head')}" if o.get("best") else ""
        return f"{good} of {total} nodes healthy{best}"

    def run(self, inputs: HeadsInputs, ctx: ActionContext) -> dict[str, Any]:
        policy = policy_of(ctx.services)
        for url in inputs.nodes.values():  # every node, before any is asked
            policy.check_url(self.name, url)
        with ThreadPoolExecutor(max_workers=min(16, len(inputs.nodes))) as pool:
            futures = {
                name: pool.submit(
                    read_head, ctx, self.name, RpcHeadInputs(url=url, timeout=inputs.timeout)
                )
                for name, url in inputs.nodes.items()
            }
            read = {name: f.result() for name, f in futures.items()}
        heads = sorted((r["head"] for r in read.values() if r["ok"]), reverse=True)
        quorum = inputs.quorum or (len(inputs.nodes) // 2 + 1)
        reference = heads[quorum - 1] if len(heads) >= quorum else None
        nodes: dict[str, Any] = {}
        for name, r in read.items():
            lag = None if not r["ok"] or reference is None else reference - r["head"]
            why = None
            if not r["ok"]:
                why = f"does not answer: {r['error']}"
            elif reference is None:
                why = f"fewer than {quorum} nodes answered: no reference head"
            elif lag is not None and lag > inputs.max_lag:
                why = f"{lag} blocks behind the reference head {reference}"
            elif r["age_s"] is not None and r["age_s"] > inputs.max_age:
                why = f"its newest block is {fmt_seconds(r['age_s'])} old"
            nodes[name] = {
                "ok": r["ok"],
                "head": r["head"],
                "age_s": r["age_s"],
                "lag": lag,
                "healthy": why is None,
                "why": why,
                "error": r["error"],
            }
        healthy = sorted(
            (n for n, v in nodes.items() if v["healthy"]), key=lambda n: -nodes[n]["head"]
        )
        best = next((n for n in healthy if n not in inputs.exclude), None)
        return {
            "nodes": nodes,
            "reference_head": reference,
            "healthy": healthy,
            "best": best,
            "best_head": nodes[best]["head"] if best else None,
            "answered": len(heads),
            "quorum": quorum,
        }
