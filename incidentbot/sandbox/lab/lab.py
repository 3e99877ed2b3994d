"""The runbook lab: three anvil nodes and HAProxy, under supervisord, in one directory.

:class:`Lab` puts together what the lab does, one module each: what it is (``base``),
starting and stopping it (``lifecycle``), its status (``status``), faults (``faults``) and
snapshots (``snapshots``).
"""

from __future__ import annotations

from typing import Any

from incidentbot.sandbox.lab import consensus
from incidentbot.sandbox.lab.config import BACKEND, CHAIN_ID, NODES, PRIMARY
from incidentbot.sandbox.lab.faults import FaultsMixin
from incidentbot.sandbox.lab.lifecycle import LifecycleMixin
from incidentbot.sandbox.lab.snapshots import SnapshotsMixin


class Lab(LifecycleMixin, FaultsMixin, SnapshotsMixin):
    """One lab in ``directory`` (created on :meth:`up`).

    Usable as a context manager: ``with Lab(tmp) as lab:`` starts it and stops it again.
    Another process finds a running lab from its directory alone (``lab.json``)."""

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def runbook_vars(self) -> dict[str, Any]:
        """The ``runbooks.vars`` that point the shipped runbooks at this lab: the load
        balancer's runtime socket and backend, the process manager's socket, each node's RPC
        URL, program and state file, the reference endpoints and the snapshot store."""
        nodes = {
            node: {
                "url": self.node_url(node),
                "server": node,
                "program": node,
                "state": str(self.state_path(node)),
                "primary": node == PRIMARY,
            }
            for node in NODES
        }
        found: dict[str, Any] = {
            "lb": {
                "socket": str(self.paths.haproxy_sock),
                "backend": BACKEND,
                "frontend": self.frontend_url,
            },
            "supervisor": str(self.paths.supervisor_sock),
            "nodes": nodes,
            "primary": PRIMARY,
            "references": [nodes[n]["url"] for n in NODES],
            "snapshots": str(self.paths.snapshots),
            "chain_id": CHAIN_ID,
        }
        cl = self.config.consensus
        if cl is not None:
            found["consensus"] = consensus.runbook_vars(cl, self.dir, self.paths.supervisor_sock)
            # What move-validator-keys takes besides: the key set the validator clients share
            # (`key_set=lab`) and where runs write the slashing-protection files they carry.
            found["key_sets"] = {
                consensus.KEY_SET: {"indices": consensus.indices(consensus.VC_INDICES)}
            }
            found["protection_dir"] = str(self.dir / "protection")
        return found

    def runbook_egress(self) -> dict[str, Any]:
        """The ``runbooks.egress`` the shipped runbooks need against this lab: its nodes and
        HAProxy listen on loopback, which the egress policy refuses unless allowed, and its
        runtime API and supervisord are unix sockets, allowed only when listed."""
        return {
            "allow": ["127.0.0.1"],
            "sockets": [str(self.paths.haproxy_sock), str(self.paths.supervisor_sock)],
        }

    def runbook_settings(self) -> dict[str, Any]:
        """``runbooks.vars`` and ``runbooks.egress`` for this lab; with the consensus part
        also ``runbooks.shell_allow`` for the Lodestar CLI (slashing-protection export and
        import run it)."""
        found: dict[str, Any] = {"vars": self.runbook_vars(), "egress": self.runbook_egress()}
        cl = self.config.consensus
        if cl is not None:
            found["shell_allow"] = [cl.lodestar]
        return found
