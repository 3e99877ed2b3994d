"""A click's served ack when Slack is slow to take the reply: the Approve button of a runbook
run, with 200 ms added to every post to a response URL, against the same click with none.

``incidentbot serve`` runs in a process of its own (bench/served.py) on a fresh SQLite database,
over HTTP and over Socket Mode, with one runbook that waits for the commander's approval. Each
repeat starts from the same state: alice starts a run, it waits for bob (the commander), the
bot is idle; bob clicks Approve. The click records the approval, and the reply only bob sees
goes through the click's response URL. The figure is the driver's time from sending the click
to receiving its ack; the baseline is the same click with no latency added, the two
alternating. Checked: every click was acknowledged, every approved run succeeded, and bob got
every reply (so the follow-up was made, late or not).

    bench/run click_ack
    python bench/click_ack.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import BenchArgs, BenchFailed, Figure, median
from bench.served import compile_bytecode, serving
from incidentbot.sandbox.slack.server import SlackSandbox

LATENCY_S = 0.2
CLICKS_PER_ROUND = 10  # of each kind
RUNBOOK = """
name: note-it
description: Note on the timeline that it was approved
approval: commander
steps:
  - id: note
    uses: incident.note
    with: {text: "approved and noted"}
"""


def _wait(probe: Callable[[], Any], what: str, limit: float = 60.0) -> Any:
    end = time.monotonic() + limit
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > end:
            raise BenchFailed(f"timed out waiting for {what}")
        time.sleep(0.01)


def _buttons(slack: SlackSandbox, channel: str, action_id: str) -> list[tuple[str, str]]:
    """(message ts, value) of each ``action_id`` button in ``channel``."""
    found = []
    with slack.workspace.lock:
        for message in slack.workspace.channel(channel).messages:
            for block in message.blocks or []:
                for element in block.get("elements") or []:
                    if element.get("action_id") == action_id:
                        found.append((message.ts, str(element.get("value"))))
    return found


class Clicks:
    """A served bot with an incident bob commands, and runs for him to approve."""

    def __init__(self, slack: SlackSandbox):
        self.slack = slack
        driver = slack.driver
        if not driver.slash_command("declare sev2 RPC p99 above 2s", user="alice").ok:
            raise BenchFailed("the declare was not acknowledged")
        self.channel = _wait(
            # a message in it: the header is posted once the bot has saved the channel, so
            # a command typed there finds the incident
            lambda: [
                c.name
                for c in slack.workspace.channels.values()
                if c.name.startswith("inc-1") and c.messages
            ],
            "the incident's channel and its header",
        )[0]
        bob = slack.workspace.user("bob").id
        made = driver.slash_command(
            f"assign commander <@{bob}>", user="alice", channel=self.channel
        )
        if not made.ok or "commander" not in made.body:
            raise BenchFailed(f"bob was not made commander: {made.body[:300]}")
        self.approved: set[str] = set()

    def one(self, latency: float) -> float:
        """Start a run, wait until the bot is idle, click Approve as bob; the ack in ms."""
        slack = self.slack
        started = slack.driver.slash_command("run note-it", user="alice", channel=self.channel)
        if not (started.ok and "Started note-it" in started.body):
            raise BenchFailed(f"the run did not start: {started.body[:200]}")

        def fresh() -> list[tuple[str, str]]:
            buttons = _buttons(slack, self.channel, "runbook_approve")
            return [(ts, run) for ts, run in buttons if run not in self.approved]

        ts, run = _wait(fresh, "the run waiting for approval")[0]
        self.approved.add(run)
        told = len(slack.ephemeral("bob"))
        slack.set_latency(latency, ["response_url"])
        try:
            ack = slack.driver.block_action(
                "runbook_approve", user="bob", channel=self.channel, message_ts=ts
            )
            if not ack.ok:
                raise BenchFailed(f"the click was not acknowledged: {ack.error}")
            _wait(lambda: len(slack.ephemeral("bob")) > told, "bob's reply")
        finally:
            slack.set_latency(0)
        _wait(lambda: self._succeeded(run), f"run {run} to succeed")
        return ack.elapsed_s * 1000

    def _succeeded(self, run: str) -> bool:
        """The run's message (the block named after it) says it succeeded."""
        marker = f"runbook-run-{run}"
        with self.slack.workspace.lock:
            channel = self.slack.workspace.channel(self.channel)
            return any(
                "succeeded" in m.text and any(b.get("block_id") == marker for b in m.blocks)
                for m in channel.messages
            )


@contextmanager
def served(transport: str) -> Iterator[Clicks]:
    slack = SlackSandbox().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "runbooks"
            folder.mkdir()
            (folder / "note-it.yaml").write_text(RUNBOOK)
            extra = {"INCIDENTBOT_RUNBOOKS__DIRS": json.dumps([str(folder)])}
            if transport == "socket":
                extra["INCIDENTBOT_SLACK__MODE"] = "socket"
                extra["INCIDENTBOT_SLACK_APP_TOKEN"] = slack.app_token
            with serving(slack, f"sqlite:///{tmp}/bench.db", **extra):
                slack.driver.mode = transport
                yield Clicks(slack)
    finally:
        slack.stop()


def measure(transport: str, rounds: int, clicks: int) -> tuple[list[float], list[float]]:
    """(acks with the latency, acks without), ms."""
    slow: list[float] = []
    plain: list[float] = []
    with served(transport) as bot:
        for n in range(rounds * clicks):
            for latency in (LATENCY_S, 0.0) if n % 2 == 0 else (0.0, LATENCY_S):
                (slow if latency else plain).append(bot.one(latency))
        runs = len(bot.approved)
    if runs != 2 * rounds * clicks:
        raise BenchFailed(f"{runs} runs approved, {2 * rounds * clicks} clicked")
    return slow, plain


def figures(args: BenchArgs) -> list[Figure]:
    compile_bytecode()
    clicks = 3 if args.quick else CLICKS_PER_ROUND
    out = []
    for transport in ("http", "socket"):
        slow, plain = measure(transport, args.rounds, clicks)
        out.append(
            Figure(
                f"Approve click over {'HTTP' if transport == 'http' else 'Socket Mode'}, "
                f"served ack with {LATENCY_S * 1000:.0f} ms on the reply (median of {len(slow)})",
                median(slow),
                median(plain),
                baseline_name="the same click, no latency added",
                target=1.5,
                note="the reply goes out after the ack",
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for f in figures(BenchArgs(rounds=args.rounds)):
        print(f"{f.name}: {f.value:.1f} ms against {f.baseline:.1f} ms ({f.ratio:.2f}×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
