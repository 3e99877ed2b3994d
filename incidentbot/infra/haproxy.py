"""HAProxy's runtime API: read server states, drain a server, put it in maintenance, weigh it.

The runtime API is HAProxy's ``stats socket`` (``stats socket /run/haproxy.sock level admin``
in the ``global`` section), a unix socket or a TCP address. One command is sent per
connection and the answer read to the end, as ``socat`` does.

Two views of the servers are parsed into the same :class:`ServerRow`: ``show stat`` (the CSV
behind the stats page: status text, check status and description) is what :meth:`servers`
reads; ``show servers state`` (the numeric state HAProxy saves across reloads) is what
:meth:`server_states` reads. Both give a ``state`` of ``UP``, ``DOWN``, ``MAINT`` or ``DRAIN``.
"""

from __future__ import annotations

import csv
import io
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from incidentbot.ports import ExternalError

ServerState = Literal["UP", "DOWN", "MAINT", "DRAIN"]
AdminState = Literal["ready", "drain", "maint"]
_NAME = re.compile(r"^[A-Za-z0-9._:-]+$")

# HAProxy's check status codes (enum healthcheck_status), as ``show servers state`` gives them,
# by the names ``show stat`` uses.
CHECK_STATUS_NAMES = {
    0: "UNK",
    1: "INI",
    2: "START",
    3: "CHECKED",
    4: "HANA",
    5: "SOCKERR",
    6: "L4OK",
    7: "L4TOUT",
    8: "L4CON",
    9: "L6OK",
    10: "L6TOUT",
    11: "L6RSP",
    12: "L7TOUT",
    13: "L7RSP",
    14: "L57DATA",
    15: "L7OK",
    16: "L7OKC",
    17: "L7STS",
    18: "PROCERR",
    19: "PROCTOUT",
    20: "PROCOK",
}
# srv_admin_state bits: forced/inherited/configured/resolution maintenance, forced/inherited drain.
_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20
_ADMIN_DRAIN = 0x08 | 0x10
# srv_op_state: 0 stopped (down), 1 starting, 2 running, 3 stopping (soft-stopped).
_OP_STOPPED, _OP_STOPPING = 0, 3


class HaproxyError(ExternalError):
    """The runtime API could not be reached or refused a command.

    ``code``: ``connect_failed``, ``timeout``, ``no_such_server``, ``no_such_backend``,
    ``permission_denied``, ``unknown_command``, ``refused`` (any other answer), ``bad_response``.
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False):
        super().__init__(code, message, retryable=retryable)
        self.message = message


@dataclass(frozen=True)
class ServerRow:
    """One server of one backend as HAProxy sees it."""

    backend: str
    server: str
    state: ServerState
    weight: int
    check_status: str | None  # L7OK, L4CON, L7STS, ... (None: no check has run or none set)
    address: str  # host:port
    backup: bool | None = None  # None when the view does not say (show servers state)
    status: str = ""  # HAProxy's own words: "UP", "DOWN 1/2", "MAINT (via b/s)", ...
    check_description: str = ""  # "Layer7 check passed", "Connection refused", ...
    last_change_s: int | None = None  # seconds since the state last changed

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.server}"


class HaproxyRuntime:
    """A client of one HAProxy's runtime API.

    ``address`` is a unix socket path (``/run/haproxy.sock``, ``unix:/run/haproxy.sock``) or a
    TCP address (``127.0.0.1:9999``, ``tcp:127.0.0.1:9999``).
    """

    def __init__(self, address: str | Path, *, timeout: float = 5.0):
        self.address = str(address)
        self.timeout = timeout
        text = self.address
        if text.startswith("unix:"):
            self._unix: str | None = text[len("unix:") :]
        elif isinstance(address, Path) or "/" in text:
            self._unix = text
        else:
            self._unix = None
            host, sep, port = text.removeprefix("tcp:").rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(
                    f"HAProxy runtime API address {text!r}: want a socket path or host:port"
                )
            self._tcp = (host.strip("[]") or "127.0.0.1", int(port))

    def __repr__(self) -> str:
        return f"HaproxyRuntime({self.address!r})"

    @property
    def unix_path(self) -> str | None:
        """The unix socket's path (None for a TCP address)."""
        return self._unix

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """(host, port) of a TCP address (None for a unix socket)."""
        return None if self._unix is not None else self._tcp

    # -- raw --------------------------------------------------------------------------------

    def command(self, command: str) -> str:
        """Send one command; return HAProxy's answer (trailing blank lines removed)."""
        if "\n" in command or ";" in command:
            raise ValueError("one command at a time (no newlines or ';')")
        try:
            if self._unix is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(self._unix)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(self._tcp, timeout=self.timeout)
            with sock:
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise HaproxyError(
                "timeout", f"{command!r} to {self.address}: no answer in time", retryable=True
            ) from exc
        except OSError as exc:
            raise HaproxyError(
                "connect_failed",
                f"cannot reach the HAProxy runtime API at {self.address}: {exc.strerror or exc}",
                retryable=True,
            ) from exc
        answer = b"".join(chunks).decode(errors="replace").rstrip("\n")
        if answer.startswith("Permission denied"):
            raise HaproxyError(
                "permission_denied",
                f"{command!r}: the runtime API at {self.address} is not at level admin "
                "(set `stats socket ... level admin`)",
            )
        if answer.startswith("Unknown command"):
            raise HaproxyError(
                "unknown_command", f"{command!r}: HAProxy does not know this command"
            )
        return answer

    # -- reads ------------------------------------------------------------------------------

    def servers(self, backend: str | None = None) -> list[ServerRow]:
        """Every server (of ``backend``, if given) from ``show stat``."""
        rows = parse_stat(self.command("show stat"))
        if backend is None:
            return rows
        self._check_name(backend)
        chosen = [r for r in rows if r.backend == backend]
        if not chosen and backend not in self.backends():
            raise self._no_backend(backend)
        return chosen

    def server_states(self, backend: str | None = None) -> list[ServerRow]:
        """Every server (of ``backend``, if given) from ``show servers state``."""
        if backend is not None:
            self._check_name(backend)
        answer = self.command("show servers state" + (f" {backend}" if backend else ""))
        if answer.strip().startswith("Can't find backend"):
            raise self._no_backend(backend or "")
        return parse_servers_state(answer)

    def server(self, backend: str, server: str) -> ServerRow:
        """One server from ``show stat`` (``no_such_server`` error listing the known ones)."""
        self._check_name(server)
        for row in self.servers(backend):
            if row.server == server:
                return row
        raise self._no_server(backend, server)

    def backends(self) -> list[str]:
        """Names of the backends (from ``show stat``)."""
        names: list[str] = []
        for record in _stat_records(self.command("show stat")):
            if record.get("svname") == "BACKEND" and record["pxname"] not in names:
                names.append(record["pxname"])
        return names

    # -- changes ----------------------------------------------------------------------------

    def set_state(self, backend: str, server: str, state: AdminState) -> ServerRow:
        """``set server <backend>/<server> state ready|drain|maint``; the row afterwards.

        ``drain`` sends no new connections (health checks go on); ``maint`` takes the server
        out entirely (checks stop); ``ready`` undoes either."""
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"state must be ready, drain or maint, not {state!r}")
        self._change(backend, server, f"state {state}")
        return self.server(backend, server)

    def set_weight(self, backend: str, server: str, weight: int) -> ServerRow:
        """``set server <backend>/<server> weight <0-256>``; the row afterwards."""
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 256:
            raise ValueError(f"weight must be an integer from 0 to 256, not {weight!r}")
        self._change(backend, server, f"weight {weight}")
        return self.server(backend, server)

    # -- internals --------------------------------------------------------------------------

    def _change(self, backend: str, server: str, what: str) -> None:
        self._check_name(backend)
        self._check_name(server)
        answer = self.command(f"set server {backend}/{server} {what}").strip()
        if not answer:
            return
        if answer.startswith("No such backend"):
            raise self._no_backend(backend)
        if answer.startswith("No such server"):
            raise self._no_server(backend, server)
        raise HaproxyError("refused", f"set server {backend}/{server} {what}: {answer}")

    def _check_name(self, name: str) -> None:
        if not _NAME.match(name or ""):
            raise ValueError(f"not a HAProxy backend or server name: {name!r}")

    def _no_backend(self, backend: str) -> HaproxyError:
        known = ", ".join(self.backends()) or "none"
        return HaproxyError("no_such_backend", f"no backend {backend!r} (backends: {known})")

    def _no_server(self, backend: str, server: str) -> HaproxyError:
        rows = [r for r in parse_stat(self.command("show stat")) if r.backend == backend]
        if not rows and backend not in self.backends():
            return self._no_backend(backend)
        known = ", ".join(r.server for r in rows) or "none"
        return HaproxyError(
            "no_such_server", f"no server {server!r} in backend {backend!r} (servers: {known})"
        )


# -- parsing -----------------------------------------------------------------------------------


def _stat_records(text: str) -> list[dict[str, str]]:
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise HaproxyError("bad_response", f"show stat: unexpected answer {text[:80]!r}")
    header = lines[0][2:].rstrip(",").split(",")
    reader = csv.reader(io.StringIO("\n".join(lines[1:])))
    return [dict(zip(header, record, strict=False)) for record in reader if record]


def status_state(status: str) -> ServerState:
    """HAProxy's status words (``UP 1/2``, ``MAINT (via b/s)``, ``no check``) → a state."""
    word = status.strip().split(" ", 1)[0].upper()
    if word in ("MAINT", "DOWN", "DRAIN"):
        return word  # type: ignore[return-value]
    if word == "NOLB":  # soft-stopped by the check (disable-on-404): like a drain
        return "DRAIN"
    return "UP"  # UP, UP 1/2 (going down), no check


def parse_stat(text: str) -> list[ServerRow]:
    """The server rows of ``show stat`` CSV (frontends and backend totals left out)."""
    rows = []
    for r in _stat_records(text):
        if r.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        status = r.get("status", "")
        weight = r.get("uweight") or r.get("weight") or "0"
        check = (r.get("check_status") or "").lstrip("* ").strip() or None
        rows.append(
            ServerRow(
                backend=r["pxname"],
                server=r["svname"],
                state=status_state(status),
                weight=int(weight),
                check_status=check,
                address=r.get("addr", ""),
                backup=r.get("bck") == "1",
                status=status,
                check_description=r.get("check_desc", ""),
                last_change_s=int(r["lastchg"]) if r.get("lastchg", "").isdigit() else None,
            )
        )
    return rows


def parse_servers_state(text: str) -> list[ServerRow]:
    """The rows of ``show servers state`` (format version 1)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise HaproxyError(
            "bad_response", f"show servers state: unknown format {text[:40]!r} (want version 1)"
        )
    if len(lines) < 2 or not lines[1].startswith("# "):
        raise HaproxyError("bad_response", "show servers state: no header line")
    header = lines[1][2:].split()
    rows = []
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        r = dict(zip(header, line.split(), strict=False))
        op, admin = int(r["srv_op_state"]), int(r["srv_admin_state"])
        state: ServerState
        if admin & _ADMIN_MAINT:
            state = "MAINT"
        elif admin & _ADMIN_DRAIN or op == _OP_STOPPING:
            state = "DRAIN"
        elif op == _OP_STOPPED:
            state = "DOWN"
        else:
            state = "UP"
        check_code = int(r.get("srv_check_status", "0"))
        # A server in maintenance runs no checks: whatever code is left over is stale.
        check = None if state == "MAINT" else CHECK_STATUS_NAMES.get(check_code, str(check_code))
        port = r.get("srv_port", "")
        rows.append(
            ServerRow(
                backend=r["be_name"],
                server=r["srv_name"],
                state=state,
                weight=int(r["srv_uweight"]),
                check_status=None if check in ("UNK", "INI") else check,
                address=f"{r['srv_addr']}:{port}" if port and port != "-" else r["srv_addr"],
                backup=None,
                status=state,
                last_change_s=int(r["srv_time_since_last_change"]),
            )
        )
    return rows
