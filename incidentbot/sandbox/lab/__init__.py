"""The runbook lab: real Ethereum nodes behind a real load balancer, on loopback.

Three anvil nodes (``node-1`` primary, ``node-2`` and ``node-3`` backups) and HAProxy in front
of them, all run by supervisord from one directory (``data/lab`` by default). It is what
runbook actions (restart a node, fail an RPC endpoint over, restore a snapshot) are tried and
tested on: :meth:`Lab.fault` breaks a node the way nodes break, and the production clients in
:mod:`incidentbot.infra` (supervisor, HAProxy runtime API, JSON-RPC, snapshot store) repair it.
With ``up(with_consensus=True)`` (``lab up --consensus``) it also runs a Lodestar dev beacon
node and validator clients A and B that hold the same keys (:mod:`.consensus`). See
``docs/lab.md``.
"""

from incidentbot.sandbox.lab import consensus
from incidentbot.sandbox.lab.base import LabError, default_dir
from incidentbot.sandbox.lab.binaries import find_anvil, find_haproxy, missing
from incidentbot.sandbox.lab.config import BACKEND, CHAIN_ID, FRONTEND, NODES, PRIMARY
from incidentbot.sandbox.lab.faults import CONSENSUS_FAULTS, FAULTS
from incidentbot.sandbox.lab.lab import Lab
from incidentbot.sandbox.lab.lifecycle import LabProcess
from incidentbot.sandbox.lab.snapshots import RestoreResult
from incidentbot.sandbox.lab.status import LabStatus, NodeStatus

__all__ = [
    "BACKEND",
    "CHAIN_ID",
    "CONSENSUS_FAULTS",
    "FAULTS",
    "FRONTEND",
    "NODES",
    "PRIMARY",
    "Lab",
    "LabError",
    "LabProcess",
    "LabStatus",
    "NodeStatus",
    "RestoreResult",
    "consensus",
    "default_dir",
    "find_anvil",
    "find_haproxy",
    "missing",
]
