"""The Slack demo: the bot and the local Slack-compatible server run a whole incident.

Everything goes over real HTTP: the sandbox sends signed slash commands and events to the bot,
the bot calls the sandbox's Web API through slack_sdk. At the end it prints what each channel
shows, as a person in the workspace would see it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlmodel import col, select

from incidentbot import db
from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.ledger.models import SETTLED, Run
from incidentbot.paging import flows as paging
from incidentbot.sandbox.lab import Lab, missing
from incidentbot.sandbox.pagerduty.server import PagerDutySandbox
from incidentbot.sandbox.slack.server import SlackSandbox

Say = Callable[[str], None]
Command = Callable[[str, str, str], None]  # (user, channel, text after /incident)


def _settle(engine: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.transaction(engine) as s:  # type: ignore[arg-type]
            if not s.exec(select(Run.id).where(col(Run.status).not_in(SETTLED))).first():
                return
        time.sleep(0.05)
    raise RuntimeError("the bot's durable work did not finish in time")


RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"


def run_demo(workdir: Path, say: Say) -> None:
    absent = missing()
    if absent:
        say(f"(The runbook lab is not installed here ({'; '.join(absent)}): no runbook run.)")
        _run_demo(workdir, say, None)
        return
    say("Starting the runbook lab: three anvil nodes behind HAProxy, under supervisord…")
    with Lab(workdir / "lab") as lab:
        _run_demo(workdir, say, lab)


def _run_demo(workdir: Path, say: Say, lab: Lab | None) -> None:
    url = f"sqlite:///{workdir / 'demo.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    sandbox = SlackSandbox().start()
    pd = PagerDutySandbox().start()
    d = pd.describe()
    webhook_secret = "demo-webhook-secret"  # noqa: S105 - the local server's only
    settings = Settings(
        database_url=url,
        postmortems={"publish_dir": str(workdir / "postmortems")},
        slack_bot_token=sandbox.bot_token,
        slack_signing_secret=sandbox.signing_secret,
        slack={"api_url": sandbox.base_url},
        pagerduty_api_token=d["api_token"],
        pagerduty_webhook_secret=webhook_secret,
        runbooks={
            "dirs": [str(RUNBOOKS)],
            **(lab.runbook_settings() if lab is not None else {}),
        },
        pagerduty={
            "api_url": d["rest_url"],
            "ca_file": str(d["ca_file"]),
            "from_email": "alice@nodeworks.example",
            "default_service": "rpc",
            "services": {
                s["name"]: {
                    "service_id": s["id"],
                    "escalation_policy_id": s["escalation_policy_id"],
                }
                for s in d["services"]
            },
        },
    )
    bot = Bot.build(settings, engine, poll=0.1)
    try:
        base = bot.start_http()
        sandbox.driver.bot_url = base + "/slack/events"
        pd.subscribe(base + "/webhooks/pagerduty", secret=webhook_secret)
        bot.start_workers()
        _script(bot, sandbox, pd, engine, say, lab, workdir / "postmortems")
    finally:
        bot.stop()
        sandbox.stop()
        pd.stop()
        engine.dispose()


def _script(
    bot: Bot,
    sb: SlackSandbox,
    pd: PagerDutySandbox,
    engine: object,
    say: Say,
    lab: Lab | None,
    publish_dir: Path,
) -> None:
    ws = sb.workspace

    def command(user: str, channel: str, text: str) -> None:
        ack = sb.driver.slash_command(text, user=user, channel=channel)
        answer = json.loads(ack.body)["text"] if ack.status == 200 and ack.body else ack.body
        visible = "to everyone" if '"in_channel"' in ack.body else f"only to {user}"
        say(f"  {user} in #{ws.channel(channel).name}: /incident {text}")
        say(
            f"    → acknowledged in {ack.elapsed_s * 1000:.0f} ms, {visible}: "
            f"{answer.splitlines()[0] if answer else ''}"
        )

    say("1. alice sees RPC latency alerts and declares an incident from #incidents")
    command("alice", "incidents", "declare sev2 RPC p99 latency above 2s on mainnet")
    _settle(engine)
    with db.transaction(engine) as s:  # type: ignore[arg-type]
        channel = svc.get(s, "INC-1").channel_name
    assert channel, "the incident channel was not created"
    say(f"   The bot created #{channel}, invited alice, pinned the header, announced it.")
    say("   alice records when the latency began and when the alert caught it")
    command("alice", channel, "milestone impact-started 25m ago")
    command("alice", channel, "milestone detected 18m ago")

    bob, carol = ws.user("bob").id, ws.user("carol").id
    say("2. Roles, investigation and a worse picture")
    command("alice", channel, f"assign commander <@{bob}|bob>")
    command("alice", channel, f"assign scribe <@{carol}|carol>")
    ws.channel(channel).members.extend([bob, carol])
    command("bob", channel, "status investigating")
    msg, _ = sb.driver.post_message("carol", channel, "geth on rpc-2 is 40 blocks behind the head")
    sb.driver.add_reaction("carol", channel, msg.ts, "pushpin")
    say("  carol pins her finding with :pushpin: (it goes on the timeline)")
    command("bob", channel, "sev 1")
    _settle(engine)
    with db.transaction(engine) as s:  # type: ignore[arg-type]
        page = paging.pages_of(s, svc.get(s, "INC-1"))[0]
    pd_user = pd.describe()["users"][1]["name"]
    pd.acknowledge(str(page.external_id), by="bob")
    pd.wait_for_webhooks()
    say(f"  {pd_user} acknowledges PagerDuty #{page.number} in the PagerDuty app")
    command("bob", channel, "oncall rpc")
    if lab is not None:
        _failover(sb, engine, say, lab, channel, command)
    command("bob", channel, "update Errors on every client. Draining rpc-2, failing over to rpc-3.")
    command("bob", channel, "milestone mitigated now")
    command("bob", channel, "status monitoring")
    command("bob", channel, "resolve Drained rpc-2 and failed over to rpc-3; geth resynced")
    command("dave", channel, "frobnicate")
    _settle(engine)

    say("\n4. What the channels show")
    say(sb.transcript())
    say("5. The timeline the postmortem will be built from")
    with db.transaction(engine) as s:  # type: ignore[arg-type]
        for event in svc.timeline(s, svc.get(s, "INC-1")):
            who = ws.users[event.actor].name if event.actor in ws.users else event.actor
            what = re.sub(
                r"<@(\w+)>|\b(U[A-Z0-9]{6,})\b",
                lambda m: "@" + ws.user(m.group(1) or m.group(2)).name,
                event.summary,
            )
            say(f"  {event.occurred_at:%H:%M:%S}  {who:<12} {event.kind:<22} {what}")
    _postmortem(sb, say, channel, command, publish_dir)


# What bob writes in the postmortem's forms, as a team would after this incident.
WRITTEN = (
    (
        "what_went_well",
        "The lag alert fired within minutes and the failover runbook moved "
        "traffic off the stuck node with one approval.",
    ),
    (
        "what_went_wrong",
        "HAProxy's health check only asks whether a node answers, so a node "
        "whose head stopped kept receiving traffic for 25 minutes.",
    ),
    (
        "where_we_got_lucky",
        "Two backups were in sync; with one, the failover would have had nowhere to go.",
    ),
    (
        "contributing_factors",
        "The health check does not compare the head with the other "
        "nodes'; the lag alert pages only after 15 minutes.",
    ),
)


def _postmortem(
    sb: SlackSandbox, say: Say, channel: str, command: Command, publish_dir: Path
) -> None:
    say("\n6. bob writes the postmortem from the channel, one form per section, and publishes it")
    for key, text in WRITTEN:
        command("bob", channel, f"postmortem edit {key}")
        view = _wait(lambda: next((v for v in sb.workspace.views.values() if v.is_open), None),
                     "the form")  # fmt: skip
        ack = sb.driver.view_submission(view.id, {"text": text}, user="bob")  # type: ignore[attr-defined]
        if ack.status != 200 or '"errors"' in ack.body:
            raise RuntimeError(f"the {key} form was refused: {ack.body}")
        _wait(lambda v=view: not v.is_open, "the form to close")  # type: ignore[attr-defined]
    command("bob", channel, "postmortem status review")
    command("bob", channel, "postmortem publish")
    md = publish_dir / "INC-1-postmortem.md"
    if not md.exists():
        raise RuntimeError(f"the postmortem was not published to {md}")
    say(f"\n7. The postmortem: {md} (and {md.with_suffix('.html').name} beside it)\n")
    lines = md.read_text(encoding="utf-8").splitlines()
    end = next((n for n, line in enumerate(lines) if line.startswith("## Timeline")), 60)
    for line in lines[:end]:
        say(f"  {line}" if line else "")


def _failover(
    sb: SlackSandbox,
    engine: object,
    say: Say,
    lab: Lab,
    channel: str,
    command: Callable[[str, str, str], None],
) -> None:
    say("3. The RPC primary's head is stuck; HAProxy still sends it traffic (it answers)")
    lab.fault("node-1", "freeze")
    frozen = lab.head("node-1")
    _wait(lambda: lab.head("node-2") > frozen + 3, "node-1 to fall behind")
    say(f"  node-1 is stuck at block {frozen}; node-2 is at {lab.head('node-2')}")
    command("alice", channel, "run plan failover-rpc-provider max_lag=3")
    command("alice", channel, "run failover-rpc-provider max_lag=3")
    marker = "runbook-run-"

    def message(button: str | None = None) -> object:
        with sb.workspace.lock:
            for msg in sb.workspace.channel(channel).messages:
                if not any(str(b.get("block_id", "")).startswith(marker) for b in msg.blocks):
                    continue
                text = json.dumps(msg.blocks)
                if button is None or f'"action_id": "{button}"' in text:
                    return msg
        return None

    msg = _wait(lambda: message("runbook_approve"), "the approval request")
    say("  bob, the commander, clicks Approve on the run message")
    sb.driver.block_action("runbook_approve", user="bob", channel=channel, message_ts=msg.ts)
    _wait(lambda: "succeeded" in getattr(message(), "text", ""), "the failover", timeout=90)
    served = _frontend(lab)
    say(f"  The run succeeded: requests through HAProxy are now answered by {served}")


def _frontend(lab: Lab) -> str:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    return httpx.post(lab.frontend_url, json=body, timeout=5).headers.get("X-Served-By", "?")


def _wait(check: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
