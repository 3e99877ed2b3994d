"""Actions for running blockchain infrastructure: read nodes (``rpc.head``, ``rpc.compare``,
``beacon.health``, ``beacon.head``, ``beacon.liveness``, ``beacon.duties``,
``beacon.performance``), move validator keys safely (``validator.stop``, ``validator.start``,
``validator.protection_*``, ``validator.prove_gone`` for a dead host, ``validator.keys_*``
through the keymanager API), restart them
(``supervisor.*``, ``systemd.restart``, ``kubernetes.rollout_restart``), steer the load
balancer in front of them (``haproxy.*``), and snapshot and restore their state
(``snapshot.*``).

Each uses the clients in :mod:`incidentbot.infra` (or the official client of the system it
drives), says in ``plan()`` what it would do without touching anything, and reports failures
the ledger's way: retryable only when nothing happened.
"""

from __future__ import annotations

from incidentbot.runbooks.actions.base import Action
from incidentbot.runbooks.actions.web3.beacon import BeaconHealth
from incidentbot.runbooks.actions.web3.beacon_reads import (
    BeaconDuties,
    BeaconHead,
    BeaconLiveness,
    BeaconPerformance,
)
from incidentbot.runbooks.actions.web3.fleet import RpcHeads
from incidentbot.runbooks.actions.web3.haproxy import (
    HaproxyServers,
    HaproxySetServerState,
    HaproxySetWeight,
)
from incidentbot.runbooks.actions.web3.kube import KubernetesRolloutRestart
from incidentbot.runbooks.actions.web3.route import HaproxyRouteTo
from incidentbot.runbooks.actions.web3.rpc import RpcCompare, RpcHead
from incidentbot.runbooks.actions.web3.snapshot import (
    SnapshotCreate,
    SnapshotList,
    SnapshotRestore,
)
from incidentbot.runbooks.actions.web3.supervisor import (
    SupervisorRestart,
    SupervisorStart,
    SupervisorStop,
)
from incidentbot.runbooks.actions.web3.systemd import SystemdRestart
from incidentbot.runbooks.actions.web3.validator_clients import ValidatorStart, ValidatorStop
from incidentbot.runbooks.actions.web3.validator_failover import (
    ValidatorProtectionCheck,
    ValidatorProveGone,
)
from incidentbot.runbooks.actions.web3.validator_keymanager import (
    ValidatorKeysDelete,
    ValidatorKeysList,
)
from incidentbot.runbooks.actions.web3.validator_protection import (
    ValidatorProtectionExport,
    ValidatorProtectionImport,
    ValidatorProtectionVerify,
)

WEB3_ACTIONS: tuple[type[Action], ...] = (
    RpcHead,
    RpcCompare,
    RpcHeads,
    BeaconHealth,
    BeaconHead,
    BeaconLiveness,
    BeaconDuties,
    BeaconPerformance,
    SupervisorRestart,
    SupervisorStop,
    SupervisorStart,
    SystemdRestart,
    KubernetesRolloutRestart,
    HaproxySetServerState,
    HaproxySetWeight,
    HaproxyServers,
    HaproxyRouteTo,
    SnapshotList,
    SnapshotCreate,
    SnapshotRestore,
    ValidatorStop,
    ValidatorStart,
    ValidatorProtectionExport,
    ValidatorProtectionImport,
    ValidatorProtectionVerify,
    ValidatorProveGone,
    ValidatorProtectionCheck,
    ValidatorKeysList,
    ValidatorKeysDelete,
)

__all__ = [
    "WEB3_ACTIONS",
    "BeaconDuties",
    "BeaconHead",
    "BeaconHealth",
    "BeaconLiveness",
    "BeaconPerformance",
    "HaproxyRouteTo",
    "HaproxyServers",
    "HaproxySetServerState",
    "HaproxySetWeight",
    "KubernetesRolloutRestart",
    "RpcCompare",
    "RpcHead",
    "RpcHeads",
    "SnapshotCreate",
    "SnapshotList",
    "SnapshotRestore",
    "SupervisorRestart",
    "SupervisorStart",
    "SupervisorStop",
    "SystemdRestart",
    "ValidatorKeysDelete",
    "ValidatorKeysList",
    "ValidatorProtectionCheck",
    "ValidatorProtectionExport",
    "ValidatorProtectionImport",
    "ValidatorProtectionVerify",
    "ValidatorProveGone",
    "ValidatorStart",
    "ValidatorStop",
]
