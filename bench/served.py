"""`incidentbot serve` in a process of its own (its own GIL), against the local Slack server.

Shared by the benchmarks that measure the bot as deployed rather than in-process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from incidentbot.sandbox.slack.server import SlackSandbox


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served_bot(database_url: str, **env_extra: str) -> Iterator[tuple[SlackSandbox, str]]:
    """Yield (the Slack sandbox wired to the bot, the bot's base URL); SIGTERM at the end."""
    sandbox = SlackSandbox().start()
    port = free_port()
    env = {
        **os.environ,
        "INCIDENTBOT_DATABASE_URL": database_url,
        "INCIDENTBOT_SLACK_BOT_TOKEN": sandbox.bot_token,
        "INCIDENTBOT_SLACK_SIGNING_SECRET": sandbox.signing_secret,
        "INCIDENTBOT_SLACK__API_URL": sandbox.base_url,
        "INCIDENTBOT_HTTP__PORT": str(port),
        "INCIDENTBOT_LOG_LEVEL": "WARNING",
        **env_extra,
    }
    cli = [sys.executable, "-m", "incidentbot.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*cli, "serve"], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts slowly
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("incidentbot serve did not come up")
            time.sleep(0.1)
        sandbox.driver.bot_url = f"{base}/slack/events"
        yield sandbox, base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        sandbox.stop()
