"""Clients for the infrastructure runbook actions act on.

- :mod:`~incidentbot.infra.rpc`: an Ethereum JSON-RPC endpoint (head, blocks, chain id).
- :mod:`~incidentbot.infra.haproxy`: HAProxy's runtime API (server states, drain, maintenance,
  weights).
- :mod:`~incidentbot.infra.supervisor`: supervisord's XML-RPC interface (start, stop, restart
  a node's process).
- :mod:`~incidentbot.infra.snapshots`: a directory of node state snapshots with manifests
  (create, list, verify, restore).

Every error is an :class:`~incidentbot.ports.ExternalError` saying whether retrying may help,
with URLs masked, so the run ledger classifies and stores it safely.
"""

from incidentbot.infra.haproxy import HaproxyError, HaproxyRuntime, ServerRow
from incidentbot.infra.rpc import Block, RpcClient, RpcError, SyncStatus
from incidentbot.infra.snapshots import (
    ChecksumMismatch,
    SnapshotError,
    SnapshotManifest,
    SnapshotStore,
)
from incidentbot.infra.supervisor import ProcessInfo, SupervisorClient, SupervisorError

__all__ = [
    "Block",
    "ChecksumMismatch",
    "HaproxyError",
    "HaproxyRuntime",
    "ProcessInfo",
    "RpcClient",
    "RpcError",
    "ServerRow",
    "SnapshotError",
    "SnapshotManifest",
    "SnapshotStore",
    "SupervisorClient",
    "SupervisorError",
    "SyncStatus",
]
