"""The lab's status: every process, each node's head and chain id, HAProxy's view."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from incidentbot.infra.haproxy import HaproxyError, ServerRow
from incidentbot.infra.rpc import RpcError
from incidentbot.infra.supervisor import ProcessInfo, SupervisorError
from incidentbot.sandbox.lab import consensus
from incidentbot.sandbox.lab.base import LabBase, LabError
from incidentbot.sandbox.lab.config import BACKEND, HAPROXY, NODES, PRIMARY

T = TypeVar("T")


@dataclass(frozen=True)
class NodeStatus:
    name: str
    role: str  # primary or backup
    port: int | None
    url: str | None
    state: str  # the supervisor state: RUNNING, STOPPED, FATAL, ... (DOWN: lab not running)
    pid: int | None
    uptime_s: int | None
    head: int | None  # None when the node does not answer
    chain_id: int | None
    error: str = ""  # why head is None, when the process runs


@dataclass(frozen=True)
class ConsensusProgramStatus:
    """The beacon node or a validator client of the consensus part."""

    name: str
    role: str  # beacon node, or the keys a validator client holds
    state: str  # the supervisor state (DOWN: lab not running)
    pid: int | None
    uptime_s: int | None
    frozen: bool = False  # the process is stopped by SIGSTOP (the `freeze` fault)


@dataclass(frozen=True)
class ConsensusStatus:
    beacon_url: str
    programs: list[ConsensusProgramStatus]
    health: int | None  # the status of /eth/v1/node/health; None: no answer
    head_slot: int | None
    finalized_epoch: int | None


@dataclass(frozen=True)
class LabStatus:
    dir: str
    running: bool
    supervisor_pid: int | None
    frontend_url: str | None
    haproxy: str  # the supervisor state of HAProxy
    nodes: list[NodeStatus] = field(default_factory=list)
    servers: list[ServerRow] = field(default_factory=list)
    consensus: ConsensusStatus | None = None

    def node(self, name: str) -> NodeStatus:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StatusMixin(LabBase):
    """:meth:`status`, and HAProxy's and the nodes' view of single nodes."""

    def status(self) -> LabStatus:
        """Where every process is, each node's head and chain id, HAProxy's view."""
        config = self.config
        running = self.is_running()
        infos: dict[str, ProcessInfo] = {}
        supervisor_pid = None
        if running:
            with contextlib.suppress(SupervisorError):
                infos = {p.name: p for p in self.supervisor.processes()}
                supervisor_pid = self.supervisor.supervisor_pid()
        nodes = []
        for name in NODES:
            info = infos.get(name)
            head = chain_id = None
            error = ""
            if info is not None and info.running:
                try:
                    with self.rpc(name, timeout=2.0) as rpc:
                        head, chain_id = rpc.block_number(), rpc.chain_id()
                except RpcError as exc:
                    error = str(exc)
            nodes.append(
                NodeStatus(
                    name=name,
                    role="primary" if name == PRIMARY else "backup",
                    port=config.ports.get(name),
                    url=f"http://127.0.0.1:{config.ports[name]}/" if name in config.ports else None,
                    state=info.state if info else "DOWN",
                    pid=info.pid if info else None,
                    uptime_s=info.uptime_s if info else None,
                    head=head,
                    chain_id=chain_id,
                    error=error,
                )
            )
        haproxy_info = infos.get(HAPROXY)
        servers: list[ServerRow] = []
        if haproxy_info is not None and haproxy_info.running:
            with contextlib.suppress(HaproxyError):
                servers = self.haproxy.servers(BACKEND)
        return LabStatus(
            dir=str(self.dir),
            running=running,
            supervisor_pid=supervisor_pid,
            frontend_url=self.frontend_url,
            haproxy=haproxy_info.state if haproxy_info else "DOWN",
            nodes=nodes,
            servers=servers,
            consensus=self._consensus_status(infos),
        )

    def _consensus_status(self, infos: dict[str, ProcessInfo]) -> ConsensusStatus | None:
        cl = self.config.consensus
        if cl is None:
            return None
        keys = consensus.VC_INDICES
        programs = []
        for name in consensus.PROGRAMS:
            info = infos.get(name)
            role = (
                "beacon node"
                if name == consensus.BEACON
                else f"validator client, keys {keys[0]}..{keys[1]}"
            )
            programs.append(
                ConsensusProgramStatus(
                    name=name,
                    role=role,
                    state=info.state if info else "DOWN",
                    pid=info.pid if info else None,
                    uptime_s=info.uptime_s if info else None,
                    frozen=bool(info and info.pid and process_frozen(info.pid)),
                )
            )
        beacon = infos.get(consensus.BEACON)
        answers = beacon is not None and beacon.running and not programs[0].frozen
        head = consensus.beacon_get(cl, "/eth/v1/beacon/headers/head") if answers else None
        checkpoints = (
            consensus.beacon_get(cl, "/eth/v1/beacon/states/head/finality_checkpoints")
            if answers
            else None
        )
        return ConsensusStatus(
            beacon_url=cl.beacon_url,
            programs=programs,
            health=consensus.health(cl) if answers else None,
            head_slot=_int(head, "header", "message", "slot"),
            finalized_epoch=_int(checkpoints, "finalized", "epoch"),
        )

    def server(self, node: str) -> ServerRow:
        """HAProxy's row for ``node``."""
        self._check_node(node)
        return self.haproxy.server(BACKEND, node)

    def wait_server(self, node: str, state: str, *, timeout: float = 15.0) -> ServerRow:
        """Wait until HAProxy reports ``node`` in ``state`` (UP, DOWN, MAINT, DRAIN)."""

        def check() -> ServerRow | None:
            row = self.server(node)
            return row if row.state == state else None

        return _wait(
            check,
            timeout,
            lambda: f"HAProxy to report {node} {state} (it reports {self.server(node).status})",
        )

    def head(self, node: str) -> int:
        with self.rpc(node, timeout=2.0) as rpc:
            return rpc.block_number()


def process_frozen(pid: int) -> bool:
    """True when ``pid`` is stopped by a signal (state T in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "T"


def _int(data: Any, *keys: str) -> int | None:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    try:
        return int(data)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _wait(check: Callable[[], T | None], timeout: float, what: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise LabError(f"gave up after {timeout:g}s waiting for {what()}")
        time.sleep(0.1)
