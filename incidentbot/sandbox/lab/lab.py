"""The runbook lab: three anvil nodes and HAProxy, under supervisord, in one directory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from incidentbot.infra.haproxy import HaproxyError, HaproxyRuntime, ServerRow
from incidentbot.infra.rpc import Block, RpcClient, RpcError
from incidentbot.infra.snapshots import (
    SnapshotError,
    SnapshotManifest,
    SnapshotStore,
    anvil_state_height,
    dump_anvil_state,
    wait_for_block,
)
from incidentbot.infra.supervisor import ProcessInfo, SupervisorClient, SupervisorError
from incidentbot.sandbox.lab import binaries
from incidentbot.sandbox.lab.config import (
    BACKEND,
    BLOCK_TIME,
    CHAIN_ID,
    HAPROXY,
    NODES,
    PRIMARY,
    LabConfig,
    LabPaths,
    render_haproxy,
    render_supervisord,
    supervisord_argv,
)

DEFAULT_DIR = "data/lab"
DIR_ENV = "INCIDENTBOT_LAB_DIR"
FaultKind = Literal["stop", "start", "freeze", "unfreeze", "lag", "corrupt", "reset"]
FAULTS: tuple[str, ...] = ("stop", "start", "freeze", "unfreeze", "lag", "corrupt", "reset")
# A lagging node mines this many times slower than the others.
LAG_SLOWDOWN = 3
# Linux's limit on a unix socket path (sun_path), less the terminating NUL.
_MAX_SOCKET_PATH = 107
T = TypeVar("T")


def default_dir() -> Path:
    """$INCIDENTBOT_LAB_DIR, else ``data/lab`` under the current directory."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


class LabError(Exception):
    """The lab cannot do what was asked; the message says why and what to do."""


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
class LabStatus:
    dir: str
    running: bool
    supervisor_pid: int | None
    frontend_url: str | None
    haproxy: str  # the supervisor state of HAProxy
    nodes: list[NodeStatus] = field(default_factory=list)
    servers: list[ServerRow] = field(default_factory=list)

    def node(self, name: str) -> NodeStatus:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RestoreResult:
    node: str
    snapshot: SnapshotManifest
    aside: Path | None  # where the replaced state file went
    block: Block  # the node's block at the snapshot's height, once restored


@dataclass(frozen=True)
class LabProcess:
    pid: int
    kind: str  # anvil, haproxy, supervisord
    argv: list[str]


class Lab:
    """One lab in ``directory`` (created on :meth:`up`).

    Usable as a context manager: ``with Lab(tmp) as lab:`` starts it and stops it again.
    Another process finds a running lab from its directory alone (``lab.json``)."""

    def __init__(self, directory: str | Path = DEFAULT_DIR):
        self.dir = Path(directory).expanduser().resolve()
        self.paths = LabPaths(self.dir)
        self.supervisor = SupervisorClient(self.paths.supervisor_sock, timeout=30.0)
        self.haproxy = HaproxyRuntime(self.paths.haproxy_sock, timeout=5.0)
        self.snapshots = SnapshotStore(self.paths.snapshots)

    def __repr__(self) -> str:
        return f"Lab({str(self.dir)!r})"

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

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
        return {
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

    def state_path(self, node: str) -> Path:
        self._check_node(node)
        return self.paths.node_state(node)

    # -- lifecycle -------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True when this lab's supervisord answers on its socket."""
        if not self.paths.supervisor_sock.exists():
            return False
        try:
            return self.supervisor.supervisor_state() == "RUNNING"
        except SupervisorError:
            return False

    def up(self, *, timeout: float = 30.0) -> LabStatus:
        """Write the configuration, start supervisord and wait until every node answers
        and HAProxy's health check passed on all three. Raises :class:`LabError` (after
        stopping whatever started) if that does not happen within ``timeout`` seconds."""
        problems = binaries.missing()
        if problems:
            raise LabError("; ".join(problems))
        if self.is_running():
            raise LabError(
                f"a lab is already running in {self.dir} "
                f"(`incidentbot lab down --dir {self.dir}` stops it)"
            )
        stale = self.processes()
        if stale:
            pids = ", ".join(f"{p.kind} {p.pid}" for p in stale)
            raise LabError(
                f"processes of an earlier lab in {self.dir} are still running ({pids}); "
                f"`incidentbot lab down --dir {self.dir}` stops them"
            )
        for sock in (self.paths.supervisor_sock, self.paths.haproxy_sock):
            if len(str(sock).encode()) > _MAX_SOCKET_PATH:
                raise LabError(
                    f"{sock} is too long for a unix socket ({_MAX_SOCKET_PATH} bytes at most); "
                    "choose a shorter lab directory"
                )
        anvil, haproxy = binaries.find_anvil(), binaries.find_haproxy()
        assert anvil is not None and haproxy is not None  # binaries.missing() said so
        ports = _free_ports(len(NODES) + 1)
        config = LabConfig(
            ports={**dict(zip(NODES, ports, strict=False)), "frontend": ports[-1]},
            anvil=str(anvil),
            haproxy=str(haproxy),
            chain_id=CHAIN_ID,
            block_time=BLOCK_TIME,
        )
        for directory in [self.paths.logs, self.paths.snapshots]:
            directory.mkdir(parents=True, exist_ok=True)
        for node in NODES:
            self.paths.node_dir(node).mkdir(parents=True, exist_ok=True)
        self.paths.haproxy_cfg.write_text(render_haproxy(config, self.paths))
        self.paths.supervisord_conf.write_text(render_supervisord(config, self.paths))
        self._check_haproxy_config(config)
        for leftover in (
            self.paths.supervisor_sock,
            self.paths.haproxy_sock,
            self.paths.supervisord_pid,
        ):
            leftover.unlink(missing_ok=True)
        self.paths.state_file.write_text(config.to_json() + "\n")
        started = subprocess.run(
            supervisord_argv(self.paths),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=self.dir,
            check=False,
        )
        if started.returncode != 0:
            detail = (started.stderr or started.stdout).strip().splitlines()
            raise LabError(
                f"supervisord did not start (exit {started.returncode}): "
                + (detail[-1] if detail else "no output")
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        return self.status()

    def down(self, *, timeout: float = 30.0) -> list[LabProcess]:
        """Stop HAProxy, the nodes and supervisord; return the processes that were running.

        Node state files, logs and snapshots stay. Whatever of this lab is still running
        after supervisord's own shutdown (a supervisord killed earlier leaves orphans) is
        sent SIGTERM, then SIGKILL. Raises :class:`LabError` if anything survives that."""
        before = self.processes()
        if self.is_running():
            with contextlib.suppress(SupervisorError):
                self.supervisor.shutdown()
        elif (pid := self._supervisord_pid()) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = self.processes()
            if not left:
                break
            for proc in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
            end = time.monotonic() + 5
            while self.processes() and time.monotonic() < end:
                time.sleep(0.1)
        left = self.processes()
        if left:
            pids = ", ".join(f"{p.kind} {p.pid}" for p in left)
            raise LabError(f"could not stop every process of the lab in {self.dir}: {pids}")
        for leftover in (
            self.paths.supervisor_sock,
            self.paths.haproxy_sock,
            self.paths.supervisord_pid,
        ):
            leftover.unlink(missing_ok=True)
        return before

    def processes(self) -> list[LabProcess]:
        """This lab's anvil, HAProxy and supervisord processes, from the process table.

        A process belongs to the lab when it is one of those programs and one of its
        arguments is a path inside the lab directory (its state file or configuration)."""
        proc = Path("/proc")
        if not proc.is_dir():
            return []
        prefix = str(self.dir) + os.sep
        found = []
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
            if not argv or not any(a.startswith(prefix) for a in argv[1:]):
                continue
            program = os.path.basename(argv[0])
            if program == "anvil":
                kind = "anvil"
            elif program == "haproxy":
                kind = "haproxy"
            elif any(a in ("supervisor.supervisord", "supervisord") for a in argv) or (
                program == "supervisord"
            ):
                kind = "supervisord"
            else:
                continue
            found.append(LabProcess(int(entry.name), kind, argv))
        return sorted(found, key=lambda p: p.pid)

    # -- status ----------------------------------------------------------------------------

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

    # -- faults ----------------------------------------------------------------------------

    def fault(self, node: str, kind: str, *, blocks: int = 10) -> str:
        """Inject a fault into ``node`` (or undo one); return what was done.

        - ``stop`` / ``start``: supervisord stops or starts the node's process.
        - ``freeze``: the node stops producing blocks (it still answers; its head stays).
        - ``unfreeze``: back to one block per block time.
        - ``lag``: the other nodes jump ``blocks`` blocks ahead and this node mines
          ``LAG_SLOWDOWN`` times slower, so it falls further behind until ``unfreeze``.
        - ``corrupt``: the state file is overwritten with garbage while the node is stopped;
          anvil refuses to load it, so the node fails to start (BACKOFF, then FATAL).
        - ``reset``: the state file is moved aside while the node is stopped; the node
          starts again on a new chain from block 0.

        A restart brings back normal mining (freeze, unfreeze and lag last until then).
        """
        self._check_node(node)
        if kind not in FAULTS:
            raise LabError(f"unknown fault {kind!r}; choose one of: {', '.join(FAULTS)}")
        self._require_running()
        block_time = self.config.block_time
        if kind == "stop":
            info = self.supervisor.stop(node)
            return f"{node} stopped ({info.state})"
        if kind == "start":
            info = self.supervisor.start(node)
            return f"{node} started ({info.state}, pid {info.pid})"
        if kind == "freeze":
            with self.rpc(node) as rpc:
                rpc.call("evm_setAutomine", [False])
                rpc.call("evm_setIntervalMining", [0])
                head = rpc.block_number()
            return f"{node} stopped producing blocks at {head}"
        if kind == "unfreeze":
            with self.rpc(node) as rpc:
                rpc.call("evm_setIntervalMining", [block_time])
                head = rpc.block_number()
            return f"{node} produces a block every {block_time}s again (head {head})"
        if kind == "lag":
            if blocks < 1:
                raise LabError("lag needs blocks >= 1")
            ahead = []
            for other in NODES:
                if other == node or not self.supervisor.state(other).running:
                    continue
                with self.rpc(other) as rpc:
                    # All at once, with the head's timestamp (interval 0): no blocks from
                    # the future.
                    rpc.call("anvil_mine", [hex(blocks), "0x0"])
                ahead.append(other)
            with self.rpc(node) as rpc:
                rpc.call("evm_setIntervalMining", [block_time * LAG_SLOWDOWN])
            jumped = f"{', '.join(ahead)} jumped {blocks} blocks ahead; " if ahead else ""
            return f"{jumped}{node} now mines every {block_time * LAG_SLOWDOWN}s"
        state = self.state_path(node)
        self.supervisor.stop(node)
        if kind == "corrupt":
            state.write_bytes(b'{"corrupted by incidentbot lab": ' + os.urandom(64).hex().encode())
            info = self.supervisor.start(node, wait=False)
            return f"{node}: state file overwritten; anvil cannot load it ({info.state})"
        # reset
        aside = None
        if state.exists():
            aside = state.with_name(f"{state.name}.reset-{int(time.time())}")
            os.replace(state, aside)
        info = self.supervisor.start(node)
        kept = f" (old state kept at {aside.name})" if aside else ""
        return f"{node} restarted on a new chain{kept}, pid {info.pid}"

    # -- snapshots -------------------------------------------------------------------------

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

    # -- internals -------------------------------------------------------------------------

    def _check_node(self, node: str) -> None:
        if node not in NODES:
            raise LabError(f"no node {node!r} in the lab (nodes: {', '.join(NODES)})")

    def _require_running(self) -> None:
        if not self.is_running():
            raise LabError(
                f"the lab in {self.dir} is not running (`incidentbot lab up --dir {self.dir}`)"
            )

    def _supervisord_pid(self) -> int | None:
        try:
            pid = int(self.paths.supervisord_pid.read_text().strip())
        except (OSError, ValueError):
            return None
        if any(p.pid == pid and p.kind == "supervisord" for p in self.processes()):
            return pid
        return None

    def _check_haproxy_config(self, config: LabConfig) -> None:
        checked = subprocess.run(
            [config.haproxy, "-c", "-q", "-f", str(self.paths.haproxy_cfg)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if checked.returncode != 0:
            detail = (checked.stderr or checked.stdout).strip()
            raise LabError(f"HAProxy refused {self.paths.haproxy_cfg}: {detail}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            waiting = self._not_ready()
            if waiting is None:
                return
            if time.monotonic() >= deadline:
                raise LabError(f"the lab did not come up within {timeout:g}s: {waiting}")
            time.sleep(0.1)

    def _not_ready(self) -> str | None:
        """None when the lab is ready, else what it still waits for (raises on failure)."""
        try:
            infos = {p.name: p for p in self.supervisor.processes()}
        except SupervisorError as exc:
            return f"supervisord to answer ({exc.code})"
        for name in (*NODES, HAPROXY):
            info = infos.get(name)
            if info is None:
                return f"supervisord to know {name}"
            if info.state in ("FATAL", "EXITED", "BACKOFF"):
                hint = ""
                if name in NODES and self.state_path(name).exists():
                    hint = (
                        f" (if {self.state_path(name)} is damaged, move it away and the node "
                        "starts on a new chain)"
                    )
                raise LabError(
                    f"{name} failed to start ({info.state}: {info.spawn_error or 'exited'})"
                    f"{hint}; last lines of {self.paths.log(name)}:\n"
                    f"{_tail(self.paths.log(name))}"
                )
            if not info.running:
                return f"{name} to run ({info.state})"
        for node in NODES:
            try:
                with self.rpc(node, timeout=1.0) as rpc:
                    if rpc.chain_id() != self.config.chain_id:
                        raise LabError(f"{node} answers with another chain id")
            except RpcError as exc:
                return f"{node} to answer ({exc.code})"
        try:
            rows = self.haproxy.servers(BACKEND)
        except HaproxyError as exc:
            return f"HAProxy's runtime API ({exc.code})"
        for row in rows:
            if row.state != "UP" or row.check_status != "L7OK":
                return f"HAProxy's health check to pass on {row.server} ({row.status})"
        return None


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _free_ports(count: int) -> list[int]:
    """Ports free on loopback right now (held together, so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait(check: Callable[[], T | None], timeout: float, what: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise LabError(f"gave up after {timeout:g}s waiting for {what()}")
        time.sleep(0.1)
