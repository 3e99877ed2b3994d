"""supervisord's XML-RPC interface over its unix socket: state, start, stop, restart.

supervisord serves XML-RPC on the socket of its ``[unix_http_server]`` section (with the
``[rpcinterface:supervisor]`` section present, as in every stock configuration).
``xmlrpc.client`` speaks HTTP over TCP only; :class:`_UnixTransport` gives it the socket.

:meth:`SupervisorClient.stop` of a stopped process and :meth:`SupervisorClient.start` of a
running one succeed (the process is already where it was asked to be), so runbook steps that
use them can be retried.
"""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incidentbot.ports import ExternalError

# supervisor.xmlrpc.Faults, by number.
_BAD_NAME = 10
_NO_FILE = 20
_NOT_EXECUTABLE = 21
_ABNORMAL_TERMINATION = 40
_SPAWN_ERROR = 50
_ALREADY_STARTED = 60
_NOT_RUNNING = 70
_SHUTDOWN_STATE = 6

RUNNING_STATES = ("RUNNING", "STARTING", "BACKOFF")
_EXITED_STATES = ("EXITED", "FATAL", "BACKOFF")


class SupervisorError(ExternalError):
    """supervisord could not be reached or refused a request.

    ``code``: ``connect_failed``, ``timeout``, ``no_such_process``, ``spawn_error``,
    ``abnormal_termination``, ``shutting_down``, ``fault_<n>`` (any other fault),
    ``bad_response``; ``fault`` is supervisord's fault string when it answered with one.
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False, fault: str = ""):
        super().__init__(code, message, retryable=retryable)
        self.message = message
        self.fault = fault


@dataclass(frozen=True)
class ProcessInfo:
    """A supervised process as supervisord reports it."""

    name: str
    group: str
    state: str  # STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL, UNKNOWN
    pid: int | None  # None unless running
    uptime_s: int | None  # seconds since it started, as supervisord counts; None unless running
    exit_status: int | None
    spawn_error: str
    description: str  # supervisord's summary: "pid 123, uptime 0:01:02", "Exited too quickly"
    log_file: str

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"

    @classmethod
    def from_xmlrpc(cls, info: dict[str, Any]) -> ProcessInfo:
        state = str(info.get("statename", "UNKNOWN"))
        pid = int(info.get("pid") or 0) or None
        start, now = int(info.get("start") or 0), int(info.get("now") or 0)
        up = state in ("RUNNING", "STOPPING") and pid is not None and start > 0
        return cls(
            name=str(info.get("name", "")),
            group=str(info.get("group", "")),
            state=state,
            pid=pid if state in ("RUNNING", "STARTING", "STOPPING") else None,
            uptime_s=max(0, now - start) if up else None,
            exit_status=int(info.get("exitstatus") or 0) if state in _EXITED_STATES else None,
            spawn_error=str(info.get("spawnerr") or ""),
            description=str(info.get("description", "")),
            log_file=str(info.get("stdout_logfile") or info.get("logfile") or ""),
        )


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float):
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        # One connection per request (supervisord may close it after answering); kept where
        # Transport.close() finds it.
        self.close()
        connection = _UnixConnection(self._path, self._timeout)
        self._connection = (host, connection)
        return connection


class SupervisorClient:
    """A client of one supervisord, through the unix socket of its ``[unix_http_server]``."""

    def __init__(self, socket_path: str | Path, *, timeout: float = 30.0):
        self.socket_path = str(socket_path).removeprefix("unix://")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SupervisorClient({self.socket_path!r})"

    # -- processes --------------------------------------------------------------------------

    def state(self, name: str) -> ProcessInfo:
        """Where process ``name`` is now."""
        return ProcessInfo.from_xmlrpc(self._call("getProcessInfo", name, process=name))

    def processes(self) -> list[ProcessInfo]:
        return [ProcessInfo.from_xmlrpc(i) for i in self._call("getAllProcessInfo")]

    def start(self, name: str, *, wait: bool = True) -> ProcessInfo:
        """Start ``name``; with ``wait``, return once supervisord counts it as started (it
        stayed up for its ``startsecs``), else as soon as it was spawned. Already running is
        not an error."""
        try:
            self._call("startProcess", name, wait, process=name)
        except SupervisorError as exc:
            if exc.code != f"fault_{_ALREADY_STARTED}":
                raise
        return self.state(name)

    def stop(self, name: str, *, wait: bool = True) -> ProcessInfo:
        """Stop ``name`` (its stop signal, then SIGKILL after ``stopwaitsecs``); with
        ``wait``, return once it exited. Already stopped is not an error."""
        try:
            self._call("stopProcess", name, wait, process=name)
        except SupervisorError as exc:
            if exc.code != f"fault_{_NOT_RUNNING}":
                raise
        return self.state(name)

    def restart(self, name: str) -> ProcessInfo:
        """Stop (if running), then start and wait until started: a new pid."""
        self.stop(name)
        return self.start(name)

    def command(self, name: str) -> str:
        """The command line supervisord starts ``name`` with (from its configuration)."""
        for info in self._call("getAllConfigInfo"):
            if info.get("name") == name or f"{info.get('group')}:{info.get('name')}" == name:
                return str(info.get("command", ""))
        raise SupervisorError("no_such_process", f"supervisord has no process {name!r}")

    # -- supervisord itself -----------------------------------------------------------------

    def supervisor_state(self) -> str:
        """``RUNNING``, ``RESTARTING``, ``SHUTDOWN`` or ``FATAL``."""
        return str(self._call("getState")["statename"])

    def supervisor_pid(self) -> int:
        return int(self._call("getPID"))

    def shutdown(self) -> None:
        """Ask supervisord to stop every process, then exit."""
        self._call("shutdown")

    # -- internals --------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, process: str | None = None) -> Any:
        proxy = xmlrpc.client.ServerProxy(
            "http://localhost/RPC2",
            transport=_UnixTransport(self.socket_path, self.timeout),
            allow_none=True,
        )
        where = f"supervisord at {self.socket_path}"
        try:
            with proxy:
                return getattr(proxy.supervisor, method)(*args)
        except xmlrpc.client.Fault as fault:
            raise _fault_error(fault, method, process, where) from None
        except TimeoutError as exc:
            raise SupervisorError(
                "timeout", f"{method}: {where} did not answer in time", retryable=True
            ) from exc
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise SupervisorError(
                "connect_failed",
                f"{method}: cannot reach {where} ({exc.strerror or exc}); is it running?",
                retryable=True,
            ) from exc
        except OSError as exc:
            raise SupervisorError(
                "connect_failed", f"{method}: {where}: {exc.strerror or exc}", retryable=True
            ) from exc
        except (xmlrpc.client.ProtocolError, http.client.HTTPException) as exc:
            raise SupervisorError(
                "bad_response", f"{method}: {where} answered {exc}", retryable=True
            ) from exc


def _fault_error(
    fault: xmlrpc.client.Fault, method: str, process: str | None, where: str
) -> SupervisorError:
    code, text = fault.faultCode, str(fault.faultString)
    subject = f"{method}({process})" if process else method
    if code == _BAD_NAME:
        return SupervisorError(
            "no_such_process", f"{subject}: {where} has no process {process!r}", fault=text
        )
    if code in (_SPAWN_ERROR, _NO_FILE, _NOT_EXECUTABLE):
        return SupervisorError(
            "spawn_error", f"{subject}: the process could not be started ({text})", fault=text
        )
    if code == _ABNORMAL_TERMINATION:
        return SupervisorError(
            "abnormal_termination", f"{subject}: the process exited abnormally ({text})", fault=text
        )
    if code == _SHUTDOWN_STATE:
        return SupervisorError(
            "shutting_down", f"{subject}: {where} is shutting down", fault=text, retryable=False
        )
    return SupervisorError(f"fault_{code}", f"{subject}: {text}", fault=text)
