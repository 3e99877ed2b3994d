"""CPU per Slack Web API call: the bot's client (kept-alive connections) against slack_sdk's
own (a new connection per call), both sending to the local Slack server.

The server runs in a process of its own, so that the calling process's CPU time
(``time.process_time``) is the client's alone; the server's is read from /proc. Batches of
``chat.postMessage`` calls, each into a channel of its own, from 4 threads at once (as the
ledger's workers send), alternate between the two clients. Each batch is checked against the
server's request log: every call of it answered ``ok``, none sent twice. The figure is the
median over the batches of CPU per call in the calling process; the server's CPU and the wall
time per call are in the note.

Run: bench/run slack_calls [--rounds 3]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from slack_sdk import WebClient

sys.path.insert(0, str(Path(__file__).absolute().parents[1]))

from bench.figures import BenchArgs, BenchFailed, Figure, median
from incidentbot.slack.web_client import PooledWebClient

THREADS = 4


@contextmanager
def slack_server() -> Iterator[tuple[dict[str, Any], Callable[[], float]]]:
    """The local Slack server in its own process: its description and its CPU seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "incidentbot.sandbox.slack", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Slack sandbox serving"):
                break
            lines.append(line)
        else:
            raise BenchFailed("the local Slack server did not start")
        yield json.loads("".join(lines)), cpu
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def batch(client: WebClient, channel: str, calls: int) -> None:
    def send(k: int) -> None:
        for i in range(calls // THREADS):
            client.chat_postMessage(channel=channel, text=f"update {k}.{i}")

    threads = [threading.Thread(target=send, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def posted(root: str, channel: str) -> tuple[int, int]:
    """(calls answered ok, calls) of ``chat.postMessage`` into ``channel``, from the server."""
    log = httpx.get(f"{root}/_sandbox/log", params={"method": "chat.postMessage"}).json()
    mine = [r for r in log["requests"] if r["args"].get("channel") == channel]
    return sum(1 for r in mine if r["response"] and r["response"].get("ok")), len(mine)


def figures(args: BenchArgs) -> list[Figure]:
    calls = 40 if args.quick else 400
    repeats = max(2, args.rounds) * 2
    with slack_server() as (info, server_cpu):
        base, token = info["base_url"], info["bot_token"]
        root = base.removesuffix("/").removesuffix("/api")
        clients = {
            "urllib": WebClient(token=token, base_url=base, retry_handlers=[]),
            "pooled": PooledWebClient(token=token, base_url=base),
        }
        seen: dict[str, list[tuple[float, float, float]]] = {k: [] for k in clients}
        for n in range(repeats):
            order = list(clients) if n % 2 == 0 else list(reversed(clients))
            for name in order:
                client = clients[name]
                channel = client.conversations_create(name=f"inc-{n}-{name}")["channel"]["id"]
                c0, s0, w0 = time.process_time(), server_cpu(), time.perf_counter()
                batch(client, channel, calls)
                c1, s1, w1 = time.process_time(), server_cpu(), time.perf_counter()
                sent = calls // THREADS * THREADS
                if posted(root, channel) != (sent, sent):
                    raise BenchFailed(f"{name}: {posted(root, channel)} of {sent} calls posted")
                seen[name].append(((c1 - c0) / sent, (s1 - s0) / sent, (w1 - w0) / sent))

    def med(name: str, i: int) -> float:
        return median([row[i] for row in seen[name]]) * 1e6

    note = (
        f"median of {repeats} batches of {calls} chat.postMessage from {THREADS} threads; "
        f"the server's CPU per call {med('pooled', 1):.0f} µs against {med('urllib', 1):.0f} µs, "
        f"wall per call {med('pooled', 2):.0f} µs against {med('urllib', 2):.0f} µs"
    )
    return [
        Figure(
            "CPU per Slack call in the calling process, kept-alive connections",
            med("pooled", 0),
            med("urllib", 0),
            unit="µs",
            baseline_name="slack_sdk's WebClient, a connection per call",
            target=0.9,
            note=note,
        )
    ]


if __name__ == "__main__":
    for f in figures(BenchArgs()):
        print(f"{f.name}: {f.value:.0f} µs against {f.baseline:.0f} µs ({f.ratio:.2f}×); {f.note}")
