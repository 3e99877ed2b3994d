"""The bot as a real process (``incidentbot serve``) for kill tests, and a side-effect server
that can hold a request open.

- :class:`BotProcess` starts ``incidentbot serve`` in a child process with its log in a file,
  waits until it listens, and dies by SIGKILL. ``tests.ledger_harness`` is imported first, so
  ``LEDGER_HARNESS_PAUSE_AFTER`` stops it dead right after a step committed. Given a
  :class:`~tests.worker_zygote.Zygote`, the process is forked from it (no Python start and
  imports to pay for each one).
- :class:`BotSeat` keeps one bot process serving a Slack sandbox: it replaces a killed process
  and points the sandbox's slash commands and button clicks at the replacement.
- :class:`HoldingEffectServer` is the harness's :class:`EffectServer` that, for chosen tokens,
  records the request and then keeps the connection open until released: the side effect
  happened, and the caller has not heard so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.egress_support import LOOPBACK
from tests.ledger_harness import REPO, EffectServer, expire_leases
from tests.worker_zygote import Child, Zygote

T = TypeVar("T")

LISTENING = re.compile(r"Listening on (http://127\.0\.0\.1:\d+)")
START_TIMEOUT = 60.0


class BotProcess:
    """``incidentbot serve`` in a child process: HTTP mode, its log (stdout and stderr) in
    ``log_path``."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        slack: Any,
        runbook_dirs: list[Path],
        lease: float = 1.5,
        workers: int = 2,
        pause_after: int | str | None = None,
        extra_env: dict[str, str] | None = None,
        zygote: Zygote | None = None,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
        env.pop("LEDGER_HARNESS_PAUSE_AFTER", None)
        env.update(
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
            INCIDENTBOT_DATABASE_URL=database_url,
            INCIDENTBOT_SLACK_BOT_TOKEN=slack.bot_token,
            INCIDENTBOT_SLACK_SIGNING_SECRET=slack.signing_secret,
            INCIDENTBOT_SLACK__API_URL=slack.base_url,
            INCIDENTBOT_WORKER_LEASE=str(lease),
            INCIDENTBOT_WORKERS=str(workers),
            INCIDENTBOT_RUNBOOKS__DIRS=json.dumps([str(d) for d in runbook_dirs]),
            INCIDENTBOT_RUNBOOKS__EGRESS=json.dumps(LOOPBACK),
            INCIDENTBOT_HTTP__PORT="0",  # it binds a free port and says which
        )
        if pause_after is not None:
            env["LEDGER_HARNESS_PAUSE_AFTER"] = str(pause_after)
        env.update(extra_env or {})
        self.url: str | None = None
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | Forked
        if zygote is not None:
            log_path.touch()
            self.proc = Forked(zygote.spawn(env, log_path, ["serve"], cwd=log_path.parent))
            return
        self._log = log_path.open("wb")
        code = (
            "import tests.ledger_harness; import sys; "
            "from incidentbot.cli import main; sys.exit(main())"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve"],
            cwd=log_path.parent,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def events_url(self) -> str:
        assert self.url is not None, "the bot is not listening yet"
        return self.url + "/slack/events"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = START_TIMEOUT) -> BotProcess:
        deadline = time.monotonic() + timeout
        while not (found := LISTENING.search(self.log())):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the bot exited with {self.proc.returncode} before listening:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not start listening:\n{self.log()}")
            time.sleep(0.02)
        self.url = found.group(1)
        return self

    def paused(self) -> bool:
        return "PAUSED run=" in self.log()

    def kill(self) -> None:
        if isinstance(self.proc, Forked):
            self.proc.child.kill()
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if not self._log.closed:
            self._log.close()


class Forked:
    """A bot forked by the zygote, as much of :class:`subprocess.Popen` as the tests read."""

    def __init__(self, child: Child):
        self.child = child
        self.pid = child.pid

    def poll(self) -> int | None:
        return self.child.poll()

    @property
    def returncode(self) -> int | None:
        return self.child.exit


class BotSeat:
    """One live bot process serving ``slack`` at a time; killed ones are replaced.

    Every process started is kept (for its log) and killed at :meth:`close`."""

    def __init__(self, tmp_path: Path, database_url: str, slack: Any, **options: Any):
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.slack = slack
        self.options = options
        self.procs: list[BotProcess] = []
        self.kills = 0
        self.current = self.start()

    def start(self) -> BotProcess:
        name = f"bot-{len(self.procs) + 1}"
        proc = BotProcess(
            self.database_url, self.tmp_path / f"{name}.log", slack=self.slack, **self.options
        )
        self.procs.append(proc)
        proc.wait_listening()
        self.slack.driver.bot_url = proc.events_url
        return proc

    def replace(self, **overrides: Any) -> BotProcess:
        """SIGKILL the live process and start another in its place (``overrides`` change the
        options of this and every later process)."""
        self.current.kill()
        # Its runs are taken over at once, not a lease later (every bot names its workers
        # "bot/..."; the next one is not started yet).
        expire_leases(self.database_url, "bot/")
        self.kills += 1
        self.options.update(overrides)
        self.current = self.start()
        return self.current

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.log_path.name} (exit {p.proc.poll()}) -----\n{p.log()}" for p in self.procs
        )

    def wait(
        self,
        probe: Callable[[], T | None],
        what: str,
        *,
        kill_paused: bool = False,
        timeout: float = 45.0,
    ) -> T:
        """Poll ``probe`` until it returns something truthy. With ``kill_paused``, each time
        the live process says it paused after a step, kill it and start a replacement (the
        ``timeout`` then starts again: it is for a wait in which nothing moves)."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if self.current.proc.poll() is not None:
                raise AssertionError(f"the bot died unexpectedly waiting for {what}\n{self.logs()}")
            if kill_paused and self.current.paused():
                self.replace()
                # Progress: the timeout bounds a wait without any, not the process starts.
                deadline = time.monotonic() + timeout
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.02)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()


class HoldingEffectServer(EffectServer):
    """Records requests like :class:`EffectServer`; a request for a token in ``held`` is
    recorded (applied) and then answered only once :attr:`release` is set."""

    def __init__(self, held: set[str] | None = None):
        super().__init__()
        self.held = set(held or ())
        self.release = threading.Event()

    def _record(self, token: str, dedupe: bool) -> tuple[int, dict[str, str], bool]:
        result = super()._record(token, dedupe)
        if token in self.held:
            self.release.wait()
        return result

    def stop(self) -> None:
        self.release.set()
        super().stop()
