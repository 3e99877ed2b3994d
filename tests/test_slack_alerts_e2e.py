"""/incident alerts: what came in from Alertmanager, in Slack."""

from __future__ import annotations

import json

import httpx

from tests.slack_harness import channel_of, running_bot
from tests.test_alerts_support import RULES, TOKEN, alert, notification


def test_alerts_subcommand_lists_the_incidents_and_the_unmatched_alerts(engine):
    with running_bot(engine, alertmanager_token=TOKEN, alerts={"rules": RULES}) as (_bot, slack):
        base = slack.driver.bot_url.removesuffix("/slack/events")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        down = alert("RpcEndpointDown", instance="rpc-2:8545", chain="ethereum")
        odd = alert("DiskAlmostFull", instance="erigon-1")
        for payload in (notification([down]), notification([odd], group="DiskAlmostFull")):
            assert (
                httpx.post(
                    f"{base}/webhooks/alertmanager", json=payload, headers=headers
                ).status_code
                == 200
            )
        ch = channel_of(engine)

        def ask(text, channel):
            return json.loads(slack.driver.slash_command(text, user="alice", channel=channel).body)

        here = ask("alerts", ch)["text"]
        assert here.startswith("*INC-1 alerts*")
        assert "RpcEndpointDown" in here and "→ INC-1" in here and "DiskAlmostFull" not in here
        unmatched = ask("alerts unmatched", "incidents")["text"]
        assert "DiskAlmostFull" in unmatched and "no rule matched" in unmatched
        assert "RpcEndpointDown" not in unmatched
