"""What every part of a lab stands on: its directory, configuration and clients.

:class:`LabBase` holds one lab's paths, its supervisord, HAProxy and snapshot store clients,
and the questions everything else asks (where a node answers, whether the lab runs);
:class:`LabError` is what the lab raises when it cannot do what was asked.
"""

from __future__ import annotations

import os
from pathlib import Path

from incidentbot.infra.haproxy import HaproxyRuntime
from incidentbot.infra.rpc import RpcClient
from incidentbot.infra.snapshots import SnapshotStore
from incidentbot.infra.supervisor import SupervisorClient, SupervisorError
from incidentbot.sandbox.lab.config import NODES, LabConfig, LabPaths

DEFAULT_DIR = "data/lab"
DIR_ENV = "INCIDENTBOT_LAB_DIR"


def default_dir() -> Path:
    """$INCIDENTBOT_LAB_DIR, else ``data/lab`` under the current directory."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


class LabError(Exception):
    """The lab cannot do what was asked; the message says why and what to do."""


class LabBase:
    """One lab in ``directory``: its paths and clients, and what it is."""

    def __init__(self, directory: str | Path = DEFAULT_DIR):
        self.dir = Path(directory).expanduser().resolve()
        self.paths = LabPaths(self.dir)
        self.supervisor = SupervisorClient(self.paths.supervisor_sock, timeout=30.0)
        self.haproxy = HaproxyRuntime(self.paths.haproxy_sock, timeout=5.0)
        self.snapshots = SnapshotStore(self.paths.snapshots)

    def __repr__(self) -> str:
        return f"Lab({str(self.dir)!r})"

    # -- what the lab is -------------------------------------------------------------------

    @property
    def config(self) -> LabConfig:
        try:
            return LabConfig.from_json(self.paths.state_file.read_text())
        except FileNotFoundError:
            raise LabError(
                f"no lab in {self.dir} (start one with `incidentbot lab up --dir {self.dir}`)"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"{self.paths.state_file} is unreadable: {exc}") from None

    def exists(self) -> bool:
        return self.paths.state_file.is_file()

    def port(self, node: str) -> int:
        self._check_node(node)
        return self.config.ports[node]

    def node_url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.port(node)}/"

    @property
    def frontend_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports['frontend']}/"

    def rpc(self, node: str | None = None, *, timeout: float = 5.0) -> RpcClient:
        """A JSON-RPC client of ``node``, or of the HAProxy frontend when None."""
        return RpcClient(self.node_url(node) if node else self.frontend_url, timeout=timeout)

    def state_path(self, node: str) -> Path:
        self._check_node(node)
        return self.paths.node_state(node)

    def is_running(self) -> bool:
        """True when this lab's supervisord answers on its socket."""
        if not self.paths.supervisor_sock.exists():
            return False
        try:
            return self.supervisor.supervisor_state() == "RUNNING"
        except SupervisorError:
            return False

    # -- internals -------------------------------------------------------------------------

    def _check_node(self, node: str) -> None:
        if node not in NODES:
            raise LabError(f"no node {node!r} in the lab (nodes: {', '.join(NODES)})")

    def _require_running(self) -> None:
        if not self.is_running():
            raise LabError(
                f"the lab in {self.dir} is not running (`incidentbot lab up --dir {self.dir}`)"
            )
