"""What a user sees of declares, through the local Slack server: acks and the channels' arrival.

For a bot wired to the local Slack-compatible server (its Web API base URL pointed there; its
slash commands reaching it over HTTP or its Socket Mode connection), each round measures:

* one declare's ack: ``--single`` declares one after another (after one that warms the
  process), each ack timed, the next sent once the previous incident's channel and digest
  announcement are out; the figure is their median;
* ``--concurrent`` declares sent at once (one thread each, released together): the p99 of
  their acks, and how many were not acknowledged within Slack's 3 s (each counted as the 3 s
  waited);
* the time from that burst until all of its incidents' channels are created and their
  announcements posted in the digest channel.

What the bot did is counted from the Slack server's own request record, not taken from an ack:
the successful ``conversations.create`` calls and the successful ``chat.postMessage`` calls
into the digest channel. A round fails if fewer happened than were declared. The Slack calls
of the sequential declares are counted per method (calls per declare).

By default the bot is ours, ``incidentbot serve`` started as bench/served.py starts it, fresh
(new database, new process, new workspace) for every round, with SQLite and PostgreSQL
(durable settings), over HTTP or Socket Mode (``--transport``). Rounds of the configurations
alternate.

Any other bot: ``--bot-command`` is a shell command that starts it, run afresh for each round
(stopped with SIGTERM to its process group at the round's end) with the Slack server's
coordinates in its environment: ``SLACK_API_URL`` (the Web API base URL), ``SLACK_BOT_TOKEN``,
``SLACK_APP_TOKEN``, ``SLACK_SIGNING_SECRET`` and a free ``BOT_PORT``. With ``--bot-url``
(``{port}`` is replaced by that port) slash commands are POSTed there once it accepts
connections; without it the bot is expected to connect over Socket Mode. Its slash command and
text are ``--command`` and ``--text`` (``{i}``: the incident's number).

Run: .venv/bin/python bench/slack_bot_latency.py [--rounds 3] [--db sqlite postgresql]
Prints figures; asserts nothing but that the declared work happened.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import BenchFailed, median, pct
from incidentbot.sandbox.slack.driver import SignedRequest
from incidentbot.sandbox.slack.server import SlackSandbox

CONCURRENT = 20
SINGLE = 5
DONE_TIMEOUT_S = 120.0

# Builds (without sending) the request that declares incident number ``i``; it may do Slack
# interactions first (a bot that declares through a modal needs it opened).
Declare = Callable[[SlackSandbox, int], SignedRequest]


def slash_declare(
    command: str = "/incident", text: str = "declare sev3 node {i} lagging", user: str = "alice"
) -> Declare:
    """Declare with one slash command (``{i}`` in ``text`` is the incident's number)."""

    def build(sandbox: SlackSandbox, i: int) -> SignedRequest:
        return sandbox.driver.slash_command_request(text.format(i=i), user=user, command=command)

    return build


@dataclass
class Round:
    """One round's figures (seconds) and what the Slack server saw."""

    label: str
    single: list[float] = field(default_factory=list)
    burst: list[float] = field(default_factory=list)
    done: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)  # summed over the single declares
    declares: int = 0  # how many declares ``calls`` covers
    channels: int = 0
    announcements: int = 0
    unacked: int = 0  # of the burst, not acknowledged within Slack's 3 s

    def line(self) -> str:
        per = sum(self.calls.values()) / max(1, self.declares)
        return (
            f"{self.label}: one declare's ack {median(self.single) * 1000:.1f} ms; "
            f"{len(self.burst)} at once: ack p99 {pct(self.burst, 0.99) * 1000:.0f} ms "
            f"({self.unacked} not acknowledged in time), "
            f"all channels + announcements out {self.done * 1000:.0f} ms "
            f"({self.channels} channels, {self.announcements} announcements); "
            f"{per:g} Slack calls per declare"
        )


def _outcome(sandbox: SlackSandbox, since: int, digest: str) -> tuple[list[float], list[float]]:
    """End times (epoch s) of the channels created and announcements posted after call
    ``since`` of the request record (the digest channel named by id or by name)."""
    digest_ids = {digest, "#" + digest, sandbox.workspace.channel(digest).id}
    channels, posts = [], []
    for r in sandbox.requests()[since:]:
        end = r.started_at + r.duration_s
        if r.method == "conversations.create" and r.ok:
            channels.append(end)
        elif r.method == "chat.postMessage" and r.ok and r.args.get("channel") in digest_ids:
            posts.append(end)
    return channels, posts


def wait_out(
    sandbox: SlackSandbox, since: int, n: int, digest: str, timeout: float = DONE_TIMEOUT_S
) -> tuple[float, int, int]:
    """Wait until ``n`` channels and ``n`` announcements are out after call ``since``; return
    when the last of them was answered (epoch s) and how many of each there were."""
    deadline = time.monotonic() + timeout
    while True:
        channels, posts = _outcome(sandbox, since, digest)
        if len(channels) >= n and len(posts) >= n:
            return max(channels + posts), len(channels), len(posts)
        if time.monotonic() > deadline:
            raise BenchFailed(
                f"after {timeout:g} s only {len(channels)} channels and {len(posts)} "
                f"announcements of {n} declares are out"
            )
        time.sleep(0.005)


def _quiet(sandbox: SlackSandbox, quiet_s: float = 0.3) -> None:
    """Wait until the bot made no Slack call for ``quiet_s``."""
    seen = -1
    while len(sandbox.requests()) != seen:
        seen = len(sandbox.requests())
        time.sleep(quiet_s)


def _send_together(sandbox: SlackSandbox, requests: list[SignedRequest]) -> tuple[list[float], int]:
    """Send every request from a thread of its own, all released at once: the ack times (one
    not acknowledged in time counts as the whole wait) and how many were not acknowledged."""
    gate = threading.Barrier(len(requests))
    times: list[float] = [0.0] * len(requests)
    failed = [0] * len(requests)

    def one(k: int) -> None:
        gate.wait()
        ack = sandbox.driver.send(requests[k])
        times[k] = ack.elapsed_s
        failed[k] = not ack.ok

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, sum(failed)


def measure(
    sandbox: SlackSandbox,
    declare: Declare,
    label: str,
    *,
    single: int = SINGLE,
    concurrent: int = CONCURRENT,
    digest: str = "incidents",
) -> Round:
    """One round against a bot already wired to ``sandbox`` (see the module's docstring)."""
    out = Round(label)
    number = 0
    for k in range(single + 1):  # the first warms the process's one-time lookups
        number += 1
        req = declare(sandbox, number)
        since = len(sandbox.requests())
        ack = sandbox.driver.send(req)
        if not ack.ok:
            raise BenchFailed(f"declare {number} not acknowledged: {ack.status} {ack.error}")
        wait_out(sandbox, since, 1, digest)
        if k:
            out.single.append(ack.elapsed_s)
        else:
            _quiet(sandbox)
            first = len(sandbox.requests())
    _quiet(sandbox)  # the last declare's later calls (invites, pins) belong to it
    out.calls.update(r.method for r in sandbox.requests()[first:])
    out.declares = single
    requests = [declare(sandbox, number + 1 + j) for j in range(concurrent)]
    since = len(sandbox.requests())
    began = time.time()
    out.burst, out.unacked = _send_together(sandbox, requests)
    last, out.channels, out.announcements = wait_out(sandbox, since, concurrent, digest)
    out.done = last - began
    return out


# -- our bot, started as bench/served.py starts it ---------------------------------------


@contextmanager
def _database(kind: str, stack: ExitStack, pg: list) -> Iterator[str]:  # type: ignore[type-arg]
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    if not pg:
        from tests.pgcluster import PgCluster

        pg.append(stack.enter_context(_cluster(PgCluster(durable=True))))
    cluster = pg[0]
    name = f"bench_{int(time.time() * 1000)}"
    cluster.execute(f"CREATE DATABASE {name}")
    yield cluster.url(name)


@contextmanager
def _cluster(cluster):  # type: ignore[no-untyped-def]
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def ours(kind: str, transport: str, stack: ExitStack, pg: list) -> Iterator[SlackSandbox]:  # type: ignore[type-arg]
    """A fresh workspace and a fresh ``incidentbot serve`` on a fresh database."""
    from bench.served import serving

    extra = {}
    sandbox = SlackSandbox().start()
    if transport == "socket":
        extra = {
            "INCIDENTBOT_SLACK__MODE": "socket",
            "INCIDENTBOT_SLACK_APP_TOKEN": sandbox.app_token,
        }
    try:
        with _database(kind, stack, pg) as url, serving(sandbox, url, **extra):
            sandbox.driver.mode = "socket" if transport == "socket" else "http"
            yield sandbox
    finally:
        sandbox.stop()


def report(rounds: list[Round]) -> None:
    """Each round, then per configuration the medians over its rounds."""
    for r in rounds:
        print("  " + r.line())
    print("medians over rounds:")
    for label in dict.fromkeys(r.label for r in rounds):
        mine = [r for r in rounds if r.label == label]
        print(
            f"  {label}: one declare's ack {median([median(r.single) for r in mine]) * 1000:.1f}"
            f" ms; ack p99 of {len(mine[0].burst)} at once "
            f"{median([pct(r.burst, 0.99) for r in mine]) * 1000:.0f} ms; all out "
            f"{median([r.done for r in mine]) * 1000:.0f} ms ({len(mine)} rounds; "
            f"{sum(r.unacked for r in mine)} of the bursts' acks late)"
        )
        calls = Counter[str]()
        for r in mine:
            calls.update(r.calls)
        n = sum(r.declares for r in mine)
        print(
            f"    Slack calls per declare: {sum(calls.values()) / n:g} "
            + ", ".join(f"{m} {c / n:g}" for m, c in sorted(calls.items()))
        )


@contextmanager
def other_bot(
    command: str, url: str | None, ready_url: str | None = None, ready_s: float = 120.0
) -> Iterator[SlackSandbox]:
    """A fresh workspace and a fresh run of ``command`` (see the module's docstring)."""
    import os
    import signal
    import subprocess
    from urllib.parse import urlsplit

    from bench.served import free_port

    sandbox = SlackSandbox().start()
    port = free_port()
    env = {
        **os.environ,
        "SLACK_API_URL": sandbox.base_url,
        "SLACK_BOT_TOKEN": sandbox.bot_token,
        "SLACK_APP_TOKEN": sandbox.app_token,
        "SLACK_SIGNING_SECRET": sandbox.signing_secret,
        "BOT_PORT": str(port),
    }
    proc = subprocess.Popen(command, shell=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_s
        target = urlsplit(url.format(port=port)) if url else None
        while True:
            if proc.poll() is not None:
                raise BenchFailed(f"the bot exited with {proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise BenchFailed(f"the bot was not ready within {ready_s:g} s")
            if target is None and sandbox.socket_mode.connected:
                sandbox.driver.mode = "socket"
                break
            if target is not None and _answers(target, ready_url and ready_url.format(port=port)):
                sandbox.driver.bot_url = target.geturl()
                sandbox.driver.mode = "http"
                break
            time.sleep(0.05)
        yield sandbox
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        sandbox.stop()


def _answers(target, ready_url: str | None) -> bool:  # type: ignore[no-untyped-def]
    """Whether the bot is ready: ``ready_url`` answers 200, or (without one) the slash-command
    URL's port accepts connections."""
    import socket

    import httpx

    try:
        if ready_url:
            return httpx.get(ready_url, timeout=1).status_code == 200
        socket.create_connection((target.hostname, target.port or 80), 1).close()
    except (OSError, httpx.TransportError):
        return False
    return True


def main() -> None:
    from bench.served import compile_bytecode

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--transport", nargs="+", default=["http"], choices=["http", "socket"])
    parser.add_argument("--single", type=int, default=SINGLE)
    parser.add_argument("--concurrent", type=int, default=CONCURRENT)
    parser.add_argument("--bot-command", help="start another bot (a shell command)")
    parser.add_argument("--bot-url", help="its slash-command URL; {port} is BOT_PORT")
    parser.add_argument("--ready-url", help="GET answers 200 once it is ready; {port} too")
    parser.add_argument("--command", default="/incident")
    parser.add_argument("--text", default="declare sev3 node {i} lagging")
    parser.add_argument("--digest", default="incidents", help="the digest channel's name")
    args = parser.parse_args()
    declare = slash_declare(args.command, args.text)
    sizes = {"single": args.single, "concurrent": args.concurrent, "digest": args.digest}
    rounds: list[Round] = []
    failed = 0

    def run(n: int, label: str, bot: AbstractContextManager[SlackSandbox]) -> None:
        nonlocal failed
        try:
            with bot as sandbox:
                rounds.append(measure(sandbox, declare, label, **sizes))
        except BenchFailed as exc:  # one failed round must not lose the others' figures
            failed += 1
            print(f"  round {n + 1}: {label} FAILED: {exc}", flush=True)
            return
        print(f"  round {n + 1}: {rounds[-1].line()}", flush=True)

    with ExitStack() as stack:
        pg: list = []  # type: ignore[type-arg]
        for n in range(args.rounds):
            if args.bot_command:
                run(n, "the bot", other_bot(args.bot_command, args.bot_url, args.ready_url))
                continue
            if n == 0:
                compile_bytecode()
            for kind in args.db:
                for transport in args.transport:
                    run(n, f"ours ({kind}, {transport})", ours(kind, transport, stack, pg))
    if rounds:
        report(rounds)
    if failed:
        raise SystemExit(f"{failed} rounds failed")


if __name__ == "__main__":
    main()
