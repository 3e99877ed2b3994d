"""A throwaway PostgreSQL cluster for the test suite, started from the installed binaries.

As root the server runs as the ``postgres`` user through ``runuser``; as anyone else it runs as
that user. Data lives in a temporary directory that is removed when the cluster stops, by a
detached low-priority ``rm`` rather than in the stopping process: the suite creates one
database per PostgreSQL test (about 10 MB and 300 files each), gigabytes in all, and on a
disk mounted with online discard unlinking them took over two minutes, which every run of
the suite waited for at its very end.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for cand in reversed(candidates):
        if (Path(cand) / "postgres").exists() and (Path(cand) / "initdb").exists():
            return Path(cand)
    found = shutil.which("postgres")
    if found and shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(found).parent
    raise PgUnavailable("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, *, durable: bool = False) -> None:
        # Tests trade durability for speed; a benchmark that reports commit latency asks for
        # ``durable`` (fsync, synchronous commit and full page writes on, as in production).
        self.durable = durable
        self.bindir = find_bindir()
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="incidentbot-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr or proc.stdout}"
            )
        return proc

    def start(self) -> PgCluster:
        if self.as_root:
            shutil.chown(self.base, user="postgres", group="postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", "postgres",
            "-A", "trust",
            "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.base}",
                "-c listen_addresses=127.0.0.1",
                *(
                    []
                    if self.durable
                    else ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
                ),
                "-c max_connections=300",
                "-c shared_buffers=64MB",
            ]
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.base / "server.log"),
            "-o", options,
            "-w", "-t", "60",
            "start",
        )  # fmt: skip
        self.started = True
        return self

    def restart(self) -> None:
        """Restart the server (``-m fast``: every client is told and disconnected)."""
        # (Its command-line options are kept from the start; the log must go to the file, or
        # the server would hold this call's output pipe open.)
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.base / "server.log"),
            "-m", "fast",
            "-w", "-t", "60",
            "restart",
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def stop(self) -> None:
        if self.started:
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "stop")  # fmt: skip
            finally:
                self.started = False
        remove_later(self.base)


def remove_later(path: Path) -> None:
    """Delete ``path`` in a process of its own, at idle priority, without waiting for it.

    The directory is renamed first, so it is gone from where it was at once."""
    if not path.exists():
        return
    doomed = path.with_name(path.name + ".removing")
    try:
        path.rename(doomed)
    except OSError:
        doomed = path
    rm = shutil.which("rm")
    if rm is None:
        shutil.rmtree(doomed, ignore_errors=True)
        return
    argv = ["nice", "-n", "19", rm, "-rf", "--", str(doomed)]
    if shutil.which("ionice"):
        argv = ["ionice", "-c", "3", *argv]
    # sh puts it in the background and exits: nothing is left for this process to reap.
    subprocess.run(
        ["sh", "-c", '"$@" </dev/null >/dev/null 2>&1 &', "remove-later", *argv],
        check=False,
        timeout=30,
        start_new_session=True,
    )
