"""The lab's configuration files: supervisord.conf and haproxy.cfg, rendered from its ports."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incidentbot.sandbox.lab import consensus
from incidentbot.sandbox.lab.consensus import ConsensusConfig

NODES = ("node-1", "node-2", "node-3")
PRIMARY = "node-1"
FRONTEND = "rpc"
BACKEND = "rpc_nodes"
HAPROXY = "haproxy"
CHAIN_ID = 31337
BLOCK_TIME = 1
# The JSON-RPC request HAProxy's health check sends to every node.
HEALTH_CHECK_BODY = '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'


@dataclass(frozen=True)
class LabPaths:
    """Where everything of one lab lives, under its directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def supervisord_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisor_sock(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def supervisord_pid(self) -> Path:
        return self.root / "supervisord.pid"

    @property
    def haproxy_cfg(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def haproxy_sock(self) -> Path:
        return self.root / "haproxy.sock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def node_state(self, node: str) -> Path:
        return self.node_dir(node) / "state.json"

    def log(self, program: str) -> Path:
        return self.logs / f"{program}.log"


@dataclass(frozen=True)
class LabConfig:
    """What ``lab up`` chose, saved in ``lab.json`` for later commands and processes."""

    ports: dict[str, int]  # node name → RPC port, and "frontend"
    anvil: str
    haproxy: str
    chain_id: int = CHAIN_ID
    block_time: int = BLOCK_TIME
    # The beacon node and validator clients (``lab up --consensus``); None without them.
    consensus: ConsensusConfig | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "version": 1,
            "ports": self.ports,
            "anvil": self.anvil,
            "haproxy": self.haproxy,
            "chain_id": self.chain_id,
            "block_time": self.block_time,
        }
        if self.consensus is not None:
            data["consensus"] = self.consensus.to_dict()
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabConfig:
        data = json.loads(text)
        return cls(
            ports={str(k): int(v) for k, v in data["ports"].items()},
            anvil=str(data["anvil"]),
            haproxy=str(data["haproxy"]),
            chain_id=int(data.get("chain_id", CHAIN_ID)),
            block_time=int(data.get("block_time", BLOCK_TIME)),
            consensus=(
                ConsensusConfig.from_dict(data["consensus"]) if data.get("consensus") else None
            ),
        )


def _ini(value: str) -> str:
    """A value for supervisord's ini file: '%' starts an expansion there."""
    return value.replace("%", "%%")


def _command(argv: list[str]) -> str:
    return _ini(" ".join(shlex.quote(a) for a in argv))


def anvil_argv(config: LabConfig, paths: LabPaths, node: str) -> list[str]:
    return [
        config.anvil,
        "--host",
        "127.0.0.1",
        "--port",
        str(config.ports[node]),
        "--chain-id",
        str(config.chain_id),
        "--block-time",
        str(config.block_time),
        # Loaded at start if present, written every second and on exit.
        "--state",
        str(paths.node_state(node)),
        "--state-interval",
        "1",
        "--color",
        "never",
    ]


def haproxy_argv(config: LabConfig, paths: LabPaths) -> list[str]:
    return [config.haproxy, "-db", "-f", str(paths.haproxy_cfg)]


def supervisord_argv(paths: LabPaths) -> list[str]:
    return [sys.executable, "-m", "supervisor.supervisord", "-c", str(paths.supervisord_conf)]


def render_supervisord(config: LabConfig, paths: LabPaths) -> str:
    logs = paths.logs
    out = [
        "; Written by `incidentbot lab up`; rewritten on every start.",
        "[unix_http_server]",
        f"file={_ini(str(paths.supervisor_sock))}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_ini(str(logs / 'supervisord.log'))}",
        "logfile_maxbytes=1MB",
        "logfile_backups=1",
        f"pidfile={_ini(str(paths.supervisord_pid))}",
        f"directory={_ini(str(paths.root))}",
        f"childlogdir={_ini(str(logs))}",
        "nodaemon=false",
        "loglevel=info",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_ini(str(paths.supervisor_sock))}",
        "",
    ]
    programs = [(n, anvil_argv(config, paths, n), 10, paths.node_dir(n)) for n in NODES]
    programs.append((HAPROXY, haproxy_argv(config, paths), 20, paths.root))
    for name, argv, priority, directory in programs:
        out += [
            f"[program:{name}]",
            f"command={_command(argv)}",
            f"directory={_ini(str(directory))}",
            f"priority={priority}",
            "autostart=true",
            "autorestart=unexpected",
            "startsecs=1",
            "startretries=2",
            "stopsignal=TERM",
            "stopwaitsecs=10",
            "redirect_stderr=true",
            f"stdout_logfile={_ini(str(paths.log(name)))}",
            "stdout_logfile_maxbytes=1MB",
            "stdout_logfile_backups=1",
            "",
        ]
    if config.consensus is not None:
        for program in consensus.programs(config.consensus, paths.root):
            name = program["name"]
            out += [
                f"[program:{name}]",
                f"command={_command(program['argv'])}",
                f"directory={_ini(str(consensus.data_dir(paths.root, name)))}",
                f"priority={program['priority']}",
                f"autostart={'true' if program['autostart'] else 'false'}",
                # A validator client that exits (doppelgänger protection found its keys live
                # elsewhere) stays down for a person to look at; so does the beacon node.
                "autorestart=false",
                "startsecs=2",
                "startretries=1",
                "stopsignal=TERM",
                # Then SIGKILL: the dev beacon node ignores SIGINT and can linger on SIGTERM.
                f"stopwaitsecs={program['stopwaitsecs']}",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={_ini(str(paths.log(name)))}",
                "stdout_logfile_maxbytes=5MB",
                "stdout_logfile_backups=1",
                "",
            ]
    return "\n".join(out)


def _quoted(value: str) -> str:
    """A word for haproxy.cfg: single quotes keep spaces and double quotes as they are."""
    if "'" in value:
        raise ValueError(f"path with a single quote cannot go in haproxy.cfg: {value}")
    return f"'{value}'"


def render_haproxy(config: LabConfig, paths: LabPaths) -> str:
    servers = []
    for node in NODES:
        backup = "" if node == PRIMARY else " backup"
        servers.append(f"    server {node} 127.0.0.1:{config.ports[node]} check{backup}")
    return "\n".join(
        [
            "# Written by `incidentbot lab up`; rewritten on every start.",
            "global",
            f"    stats socket {_quoted(str(paths.haproxy_sock))} mode 600 level admin",
            "    stats timeout 30s",
            "    log stdout format raw local0 info",
            "",
            "defaults",
            "    mode http",
            "    log global",
            "    option httplog",
            "    timeout connect 1s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    timeout check 1s",
            "    retries 2",
            "    option redispatch",
            "",
            f"frontend {FRONTEND}",
            f"    bind 127.0.0.1:{config.ports['frontend']}",
            f"    default_backend {BACKEND}",
            "",
            f"backend {BACKEND}",
            "    # node-1 serves; node-2 and node-3 take over only while it is down.",
            "    option httpchk",
            "    http-check send meth POST uri / hdr Content-Type application/json "
            f"body '{HEALTH_CHECK_BODY}'",
            "    http-check expect status 200",
            "    default-server inter 1s fall 2 rise 2",
            "    # Which node answered: the lab's tests and demos read it.",
            "    http-response set-header X-Served-By %[srv_name]",
            *servers,
            "",
        ]
    )
