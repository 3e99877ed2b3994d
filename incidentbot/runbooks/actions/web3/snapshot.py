"""``snapshot.list``, ``snapshot.create``, ``snapshot.restore``: node state snapshots in a
store directory (``<store>/<id>/state.json`` + ``manifest.json``, see
:mod:`incidentbot.infra.snapshots`).

A restore is the dangerous one. It checks the snapshot (checksum, chain id) before it touches
the node, keeps the node's old state (moved aside, never deleted), and only reports success
once the node serves the snapshot's block hash at the snapshot's height.

Checksums are given as ``sha256:<hex>``: a bare 64-digit hex string looks like a private key
and would be masked wherever outputs are shown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from incidentbot.infra.rpc import Block, RpcClient, RpcError
from incidentbot.infra.snapshots import (
    ChecksumMismatch,
    SnapshotError,
    SnapshotManifest,
    SnapshotStore,
    anvil_state_height,
    dump_anvil_state,
    wait_for_block,
)
from incidentbot.infra.supervisor import SupervisorClient, SupervisorError
from incidentbot.ledger.actions import OutcomeUnknownError, PermanentError
from incidentbot.runbooks.actions._common import fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext, plural
from incidentbot.runbooks.actions.egress_http import transport
from incidentbot.runbooks.actions.web3._util import (
    HttpUrlText,
    Timeout,
    after_change,
    program_name,
    supervisor_socket,
    wait_until,
)
from incidentbot.runbooks.actions.web3.supervisor import CALL_TIMEOUT, start, stop
from incidentbot.runbooks.egress import policy_of

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
LATEST = "latest"


def manifest_dict(manifest: SnapshotManifest, store: SnapshotStore) -> dict[str, Any]:
    return {
        "id": manifest.id,
        "node": manifest.node,
        "chain_id": manifest.chain_id,
        "height": manifest.height,
        "block_hash": manifest.block_hash,
        "checksum": f"sha256:{manifest.sha256}",
        "size": manifest.size,
        "created": manifest.created.isoformat().replace("+00:00", "Z"),
        "format": manifest.format,
        "path": str(store.root / manifest.id),
    }


def _store(directory: str, ctx: ActionContext) -> SnapshotStore:
    store = SnapshotStore(directory)
    if not store.root.is_dir():
        raise PermanentError(shown(ctx, f"there is no snapshot store at {directory}"))
    return store


def _snapshot_error(ctx: ActionContext, exc: SnapshotError) -> PermanentError:
    return PermanentError(shown(ctx, str(exc)))


# -- snapshot.list -----------------------------------------------------------------------------


class SnapshotListInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = Field(min_length=1)
    chain_id: int | None = Field(default=None, ge=1)
    node: str | None = Field(default=None, pattern=_ID.pattern)
    limit: int = Field(default=20, ge=1, le=1000)
    verify: bool = False


class SnapshotList(Action):
    """The snapshots in a store, newest first, with their manifests; optionally only those
    of one chain or one node, and with each state file checked against its manifest.

    A store directory that does not exist is an error: a mistyped path must not look like a
    store without snapshots."""

    name = "snapshot.list"
    description = "List the snapshots in a store, newest first, with their manifests."
    idempotent = True
    Inputs = SnapshotListInputs
    outputs: ClassVar[dict[str, str]] = {
        "snapshots": "[{id, node, chain_id, height, block_hash, checksum (sha256:<hex>), size, "
        "created, format, path}] newest first (with `verify`: also `verified`, `problem`)",
        "count": "how many are listed (at most `limit`)",
        "total": "how many match before `limit`",
        "latest": "the id of the newest one that matches (with verify: the newest that "
        "verified; null when none)",
    }

    def plan(self, inputs: SnapshotListInputs, ctx: ActionContext) -> str:
        only = [f"chain {inputs.chain_id}"] if inputs.chain_id is not None else []
        only += [f"node {inputs.node}"] if inputs.node else []
        which = f" of {' and '.join(only)}" if only else ""
        check = ", checking each state file's checksum" if inputs.verify else ""
        return shown(ctx, f"list the snapshots{which} in {inputs.store} (newest first{check})")

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        latest = f"; newest {o['latest']}" if o.get("latest") else ""
        return f"{plural(o.get('count', 0), 'snapshot')} found{latest}"

    def run(self, inputs: SnapshotListInputs, ctx: ActionContext) -> dict[str, Any]:
        store = _store(inputs.store, ctx)
        found = [
            m
            for m in store.list()
            if (inputs.chain_id is None or m.chain_id == inputs.chain_id)
            and (inputs.node is None or m.node == inputs.node)
        ]
        listed = []
        for manifest in found[: inputs.limit]:
            item = manifest_dict(manifest, store)
            if inputs.verify:
                try:
                    store.verify(manifest.id)
                    item.update(verified=True, problem=None)
                except SnapshotError as exc:
                    item.update(verified=False, problem=shown(ctx, str(exc)))
            listed.append(item)
        if inputs.verify:  # with verify, the newest one that passed (a bad newest is skipped)
            latest = next((i["id"] for i in listed if i["verified"]), None)
        else:
            latest = found[0].id if found else None
        return {
            "snapshots": listed,
            "count": len(listed),
            "total": len(found),
            "latest": latest,
        }


# -- snapshot.create ---------------------------------------------------------------------------


class SnapshotCreateInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = Field(min_length=1)
    node: str = Field(pattern=_ID.pattern)
    rpc_url: HttpUrlText
    timeout: Timeout = 60.0


class SnapshotCreate(Action):
    """Snapshot an anvil node's whole state, as the node itself dumps it
    (``anvil_dumpState``), with the chain id and the block hash at the dump's height as the
    node reports them. A repeated create only adds another snapshot."""

    name = "snapshot.create"
    description = "Snapshot a node's state (anvil_dumpState) into a store, with a manifest."
    idempotent = True
    Inputs = SnapshotCreateInputs
    outputs: ClassVar[dict[str, str]] = {
        "id": "the new snapshot's id (<node>-<height>-<UTC time>)",
        "node": "the node name recorded",
        "chain_id": "the node's chain id",
        "height": "the head the state was dumped at",
        "block_hash": "the block hash at that height",
        "checksum": "sha256:<hex> of the state file",
        "size": "bytes of the state file",
        "created": "when (UTC, ISO 8601)",
        "format": "anvil-state",
        "path": "the snapshot's directory",
    }

    def plan(self, inputs: SnapshotCreateInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_url(self.name, inputs.rpc_url)
        return shown(
            ctx,
            f"snapshot {inputs.node}: anvil_dumpState from {inputs.rpc_url} into {inputs.store} "
            f"(timeout {fmt_seconds(inputs.timeout)})",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        return f"Snapshot {o.get('id', '?')} taken at height {o.get('height', '?')}"

    def run(self, inputs: SnapshotCreateInputs, ctx: ActionContext) -> dict[str, Any]:
        policy_of(ctx.services).check_url(self.name, inputs.rpc_url)
        store = SnapshotStore(inputs.store)
        try:
            with RpcClient(
                inputs.rpc_url, timeout=inputs.timeout, transport=transport(ctx, self.name)
            ) as rpc:
                data = dump_anvil_state(rpc)
                manifest = store.create(
                    data, rpc=rpc, node=inputs.node, height=anvil_state_height(data)
                )
        except SnapshotError as exc:
            raise _snapshot_error(ctx, exc) from None
        except OSError as exc:
            raise PermanentError(
                shown(ctx, f"cannot write the snapshot into {inputs.store}: {exc}")
            ) from None
        return manifest_dict(manifest, store)


# -- snapshot.restore --------------------------------------------------------------------------


class SnapshotRestoreInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = Field(min_length=1)
    snapshot: str = Field(min_length=1)
    chain_id: int = Field(ge=1)
    node: str | None = Field(default=None, pattern=_ID.pattern)
    target: str = Field(min_length=1)
    rpc_url: HttpUrlText
    socket: str
    program: str
    timeout: Timeout = 60.0

    @field_validator("snapshot")
    @classmethod
    def _snapshot(cls, value: str) -> str:
        value = value.strip()
        if value != LATEST and not _ID.match(value):
            raise ValueError(f"{value!r} is not a snapshot id (or `latest`)")
        return value

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        return supervisor_socket(value)

    @field_validator("program")
    @classmethod
    def _program(cls, value: str) -> str:
        return program_name(value)

    @model_validator(mode="after")
    def _node_with_latest(self) -> SnapshotRestoreInputs:
        if self.node is not None and self.snapshot != LATEST:
            raise ValueError("`node` picks among snapshots for `latest`; leave it out with an id")
        return self


def _pick(store: SnapshotStore, inputs: SnapshotRestoreInputs) -> SnapshotManifest:
    """The snapshot to restore: by id, or the newest of the chain (and node)."""
    if inputs.snapshot != LATEST:
        return store.get(inputs.snapshot)
    candidates = [
        m
        for m in store.list()
        if m.chain_id == inputs.chain_id and (inputs.node is None or m.node == inputs.node)
    ]
    if not candidates:
        of = f"chain {inputs.chain_id}" + (f" and node {inputs.node}" if inputs.node else "")
        raise SnapshotError(f"no snapshot of {of} in {store.root}")
    return candidates[0]


class SnapshotRestore(Action):
    """Put a snapshot back on a node run by supervisord.

    1. Picks the snapshot (an id, or ``latest`` of ``chain_id``, optionally of ``node``) and
       verifies it: the state file must have the manifest's SHA-256 and the manifest's chain
       id must be ``chain_id``. On a mismatch the restore is refused before the node is
       touched.
    2. Stops ``program`` through supervisord.
    3. Moves the file at ``target`` (the node's state file) aside to
       ``<target>.replaced-<UTC time>`` (kept: ``aside`` in the outputs) and copies the
       snapshot's state there.
    4. Starts ``program`` and waits until it is RUNNING.
    5. Waits until ``rpc_url`` serves the snapshot's block hash at the snapshot's height.

    ``timeout`` bounds each wait. Not idempotent: errors after step 2 are reported as
    "outcome unknown" or permanent (never "retry"), saying what had been done."""

    name = "snapshot.restore"
    description = (
        "Restore a node from a verified snapshot: stop it, keep its old state aside, put the "
        "snapshot in place, start it, and wait until it serves the snapshot's block."
    )
    idempotent = False
    Inputs = SnapshotRestoreInputs
    outputs: ClassVar[dict[str, str]] = {
        "snapshot": "the id restored",
        "chain_id": "the snapshot's chain id",
        "height": "the snapshot's height",
        "block_hash": "the block hash the node now serves at that height",
        "target": "the state file restored",
        "aside": "where the node's previous state file was moved (null if there was none)",
        "program": "the supervisord program",
        "pid_before": "its pid before (null if it was not running)",
        "pid": "its pid afterwards",
        "state": "its supervisord state afterwards",
    }

    def plan(self, inputs: SnapshotRestoreInputs, ctx: ActionContext) -> str:
        policy = policy_of(ctx.services)
        policy.check_url(self.name, inputs.rpc_url)
        policy.check_socket(self.name, inputs.socket)
        which = (
            f"the newest snapshot of chain {inputs.chain_id}"
            + (f" and node {inputs.node}" if inputs.node else "")
            if inputs.snapshot == LATEST
            else f"snapshot {inputs.snapshot}"
        )
        return shown(
            ctx,
            f"restore {which} from {inputs.store} to {inputs.target}: verify its checksum and "
            f"chain id {inputs.chain_id}, stop {inputs.program} (supervisord at "
            f"{inputs.socket}), move the old state aside, start it, and wait up to "
            f"{fmt_seconds(inputs.timeout)} for {inputs.rpc_url} to serve the snapshot's block",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        return (
            f"Restored {o.get('snapshot', '?')} (height {o.get('height', '?')}); "
            f"{o.get('program', 'the node')} is {str(o.get('state', '?')).lower()}"
        )

    def run(self, inputs: SnapshotRestoreInputs, ctx: ActionContext) -> dict[str, Any]:
        store = _store(inputs.store, ctx)
        target = Path(inputs.target)
        # 1. Everything that can refuse, before the node is touched.
        policy = policy_of(ctx.services)
        policy.check_url(self.name, inputs.rpc_url)
        policy.check_socket(self.name, inputs.socket, real=True)
        try:
            manifest = _pick(store, inputs)
            manifest = store.verify(manifest.id)
        except ChecksumMismatch as exc:
            raise PermanentError(
                shown(ctx, f"{exc}; the node was not touched (restore refused)")
            ) from None
        except SnapshotError as exc:
            raise _snapshot_error(ctx, exc) from None
        if manifest.chain_id != inputs.chain_id:
            raise PermanentError(
                f"snapshot {manifest.id} is of chain {manifest.chain_id}, not {inputs.chain_id}; "
                "the node was not touched (restore refused)"
            )
        if target.is_dir():
            raise PermanentError(shown(ctx, f"target {target} is a directory, not a state file"))
        supervisor = SupervisorClient(inputs.socket, timeout=min(CALL_TIMEOUT, inputs.timeout))
        before = supervisor.state(inputs.program)  # an unknown program is refused here
        name = inputs.program

        # 2. Stop.
        try:
            stop(ctx, supervisor, name, wait=True, timeout=inputs.timeout)
        except (SupervisorError, OutcomeUnknownError) as exc:
            raise after_change(ctx, exc, f"stopping {name} was requested") from None
        # 3. Swap the state file (the old one is kept).
        try:
            aside = store.restore(manifest.id, target)
        except (SnapshotError, OSError) as exc:
            raise PermanentError(
                shown(
                    ctx,
                    f"{name} was stopped but its state could not be replaced: {exc}; {target} "
                    "is unchanged",
                )
            ) from None
        kept = f"its previous state is at {aside}" if aside else "there was no previous state"
        # 4. Start.
        try:
            after = start(ctx, supervisor, name, wait=True, timeout=inputs.timeout)
        except (SupervisorError, OutcomeUnknownError, PermanentError) as exc:
            raise after_change(
                ctx, exc, f"snapshot {manifest.id} was put in place and {name} started; {kept}"
            ) from None
        # 5. The node serves the snapshot's block.
        with RpcClient(
            inputs.rpc_url, timeout=min(5.0, inputs.timeout), transport=transport(ctx, self.name)
        ) as rpc:
            block = self._wait_block(ctx, rpc, manifest, inputs.timeout, kept)
        return {
            "snapshot": manifest.id,
            "chain_id": manifest.chain_id,
            "height": manifest.height,
            "block_hash": block.hash,
            "target": str(target),
            "aside": str(aside) if aside else None,
            "program": name,
            "pid_before": before.pid,
            "pid": after.pid,
            "state": after.state,
        }

    def _wait_block(
        self,
        ctx: ActionContext,
        rpc: RpcClient,
        manifest: SnapshotManifest,
        timeout: float,
        kept: str,
    ) -> Block:
        done = f"snapshot {manifest.id} was put in place and the node started; {kept}"

        def check() -> tuple[Block | None, str]:
            try:  # one short wait at a time, so a stopped run is noticed
                return wait_for_block(
                    rpc, manifest.height, manifest.block_hash, timeout=0.5, interval=0.1
                ), ""
            except SnapshotError as exc:
                return None, str(exc).rsplit(": ", 1)[-1]
            except RpcError as exc:
                raise after_change(ctx, exc, done) from None

        def failed(message: str) -> Exception:
            return PermanentError(shown(ctx, f"{message}; {done}"))

        return wait_until(
            ctx,
            check,
            timeout=timeout,
            what=(f"{rpc.masked_url} to serve {manifest.block_hash} at height {manifest.height}"),
            on_timeout=failed,
            on_stop=lambda m: OutcomeUnknownError(shown(ctx, f"{m}; {done}")),
        )
