"""Snapshots of a lab node's state: taking one, and putting one back on a node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from incidentbot.infra.rpc import Block
from incidentbot.infra.snapshots import (
    SnapshotError,
    SnapshotManifest,
    anvil_state_height,
    dump_anvil_state,
    wait_for_block,
)
from incidentbot.infra.supervisor import SupervisorError
from incidentbot.sandbox.lab.base import LabBase, LabError


@dataclass(frozen=True)
class RestoreResult:
    node: str
    snapshot: SnapshotManifest
    aside: Path | None  # where the replaced state file went
    block: Block  # the node's block at the snapshot's height, once restored


class SnapshotsMixin(LabBase):
    """:meth:`snapshot` and :meth:`restore`, through the lab's snapshot store."""

    def snapshot(self, node: str) -> SnapshotManifest:
        """Snapshot ``node``'s state as the node itself dumps it (``anvil_dumpState``)."""
        self._check_node(node)
        self._require_running()
        with self.rpc(node, timeout=30.0) as rpc:
            data = dump_anvil_state(rpc)
            return self.snapshots.create(data, rpc=rpc, node=node, height=anvil_state_height(data))

    def restore(self, node: str, snapshot_id: str, *, timeout: float = 30.0) -> RestoreResult:
        """Put a snapshot back on ``node``: verify it, stop the node, move its state file
        aside, put the snapshot's in place, start it, and wait until it answers with the
        snapshot's block hash at the snapshot's height. A snapshot that fails its checksum is
        refused before the node is touched."""
        self._check_node(node)
        self._require_running()
        manifest = self.snapshots.verify(snapshot_id)
        chain_id = self.config.chain_id
        if manifest.chain_id != chain_id:
            raise LabError(
                f"snapshot {snapshot_id} is of chain {manifest.chain_id}; the lab runs {chain_id}"
            )
        self.supervisor.stop(node)
        aside = self.snapshots.restore(snapshot_id, self.state_path(node))
        try:
            self.supervisor.start(node)
        except SupervisorError as exc:
            raise LabError(
                f"{node} did not start on snapshot {snapshot_id}: {exc.message}; "
                f"see {self.paths.log(node)}"
            ) from exc
        with self.rpc(node) as rpc:
            try:
                block = wait_for_block(rpc, manifest.height, manifest.block_hash, timeout=timeout)
            except SnapshotError as exc:
                raise LabError(str(exc)) from exc
        return RestoreResult(node=node, snapshot=manifest, aside=aside, block=block)
