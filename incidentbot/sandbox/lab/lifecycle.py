"""Starting and stopping the lab: configuration files, supervisord, and its processes.

:meth:`LifecycleMixin.up` writes supervisord.conf and haproxy.cfg, starts supervisord and
waits until every node answers and HAProxy's health check passes; :meth:`~LifecycleMixin.down`
stops it all, down to orphans a killed supervisord left behind, found in the process table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from incidentbot.infra.haproxy import HaproxyError
from incidentbot.infra.rpc import RpcError
from incidentbot.infra.supervisor import ProcessInfo, SupervisorError
from incidentbot.sandbox.lab import binaries, consensus
from incidentbot.sandbox.lab.base import LabError
from incidentbot.sandbox.lab.config import (
    BACKEND,
    BLOCK_TIME,
    CHAIN_ID,
    HAPROXY,
    NODES,
    LabConfig,
    render_haproxy,
    render_supervisord,
    supervisord_argv,
)
from incidentbot.sandbox.lab.status import LabStatus, StatusMixin

# Linux's limit on a unix socket path (sun_path), less the terminating NUL.
_MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class LabProcess:
    pid: int
    kind: str  # anvil, haproxy, supervisord
    argv: list[str]


class LifecycleMixin(StatusMixin):
    """:meth:`up`, :meth:`down` and the lab's :meth:`processes`."""

    def up(self, *, timeout: float | None = None, with_consensus: bool = False) -> LabStatus:
        """Write the configuration, start supervisord and wait until every node answers
        and HAProxy's health check passed on all three. Raises :class:`LabError` (after
        stopping whatever started) if that does not happen within ``timeout`` seconds
        (default 30, 120 with the consensus part).

        ``with_consensus`` adds a Lodestar dev beacon node and validator clients A (started)
        and B (stopped) on a new devnet (see :mod:`incidentbot.sandbox.lab.consensus`); the
        lab is then ready once the beacon API answers and A runs."""
        if timeout is None:
            timeout = 120.0 if with_consensus else 30.0
        problems = binaries.missing() + (consensus.missing() if with_consensus else [])
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
        ports = _free_ports(len(NODES) + 1 + (4 if with_consensus else 0))
        cl = None
        if with_consensus:
            node, lodestar = consensus.find_node(), consensus.find_lodestar()
            assert node is not None and lodestar is not None  # consensus.missing() said so
            rest_port, p2p_port = ports.pop(), ports.pop()
            cl = consensus.ConsensusConfig(
                node=str(node),
                lodestar=str(lodestar),
                rest_port=rest_port,
                p2p_port=p2p_port,
                keymanager_ports=(ports.pop(), ports.pop()),
            )
            consensus.reset_data(self.dir)
        config = LabConfig(
            ports={**dict(zip(NODES, ports, strict=False)), "frontend": ports[-1]},
            anvil=str(anvil),
            haproxy=str(haproxy),
            chain_id=CHAIN_ID,
            block_time=BLOCK_TIME,
            consensus=cl,
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
        self._beacon_starts, self._a_started = 1, False
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
        # A frozen (SIGSTOPped) beacon node cannot act on the signal that stops it.
        for proc in before:
            if proc.kind == "lodestar":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
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
        """This lab's anvil, HAProxy, Lodestar and supervisord processes, from the process
        table.

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
            elif program.startswith("node") and consensus.is_lodestar(argv):
                kind = "lodestar"
            elif any(a in ("supervisor.supervisord", "supervisord") for a in argv) or (
                program == "supervisord"
            ):
                kind = "supervisord"
            else:
                continue
            found.append(LabProcess(int(entry.name), kind, argv))
        return sorted(found, key=lambda p: p.pid)

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
        cl = self.config.consensus
        for name in (*NODES, HAPROXY, *((consensus.BEACON,) if cl else ())):
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
        if cl is not None:
            return self._consensus_not_ready(cl, infos)
        return None

    def _consensus_not_ready(
        self, cl: consensus.ConsensusConfig, infos: dict[str, ProcessInfo]
    ) -> str | None:
        """The devnet runs (blocks past genesis), then validator client A is started and
        stays up. A beacon node that came up too late for its own genesis is started again
        (a new genesis), up to ``START_ATTEMPTS`` times."""
        state, seen = consensus.chain_state(cl)
        if state == "stuck":
            self._beacon_starts = getattr(self, "_beacon_starts", 1) + 1
            if self._beacon_starts > consensus.START_ATTEMPTS:
                raise LabError(
                    f"the beacon node came up too late for its genesis "
                    f"{consensus.START_ATTEMPTS} times ({seen}); the machine may be too busy; "
                    f"last lines of {self.paths.log(consensus.BEACON)}:\n"
                    f"{_tail(self.paths.log(consensus.BEACON))}"
                )
            self.supervisor.stop(consensus.BEACON)
            self.supervisor.start(consensus.BEACON, wait=False)
            return f"the beacon node, started again: {seen}"
        if state != "running":
            return f"the devnet to run ({seen})"
        a = infos.get(consensus.VALIDATOR_A)
        if a is None:
            return f"supervisord to know {consensus.VALIDATOR_A}"
        if a.state in ("STOPPED",) and not getattr(self, "_a_started", False):
            self._a_started = True
            self.supervisor.start(consensus.VALIDATOR_A, wait=False)
            return f"{consensus.VALIDATOR_A} to start"
        if a.state in ("FATAL", "EXITED", "BACKOFF", "STOPPED"):
            raise LabError(
                f"{consensus.VALIDATOR_A} failed to start ({a.state}); last lines of "
                f"{self.paths.log(consensus.VALIDATOR_A)}:\n"
                f"{_tail(self.paths.log(consensus.VALIDATOR_A))}"
            )
        if not a.running:
            return f"{consensus.VALIDATOR_A} to run ({a.state})"
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
