"""A bot process that stops dead after a change typed in Slack committed, with its claim, and
before its answer is sent (tests/test_change_claim.py kills it there).

Usage: python -m tests.change_claim_child DATABASE_URL SLACK_API_URL BOT_TOKEN SIGNING_SECRET
Prints ``url <bot url>`` once it serves, then ``answering`` when a request's answer is held.
"""

from __future__ import annotations

import sys
import threading

from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.slack.once import OnceApp


def main(url: str, api: str, token: str, secret: str) -> None:
    store = OnceApp._store
    serving = threading.Event()  # the warm-up's own requests are not held

    def held(self, key, resp):  # type: ignore[no-untyped-def]
        if serving.is_set():
            print("answering", flush=True)
            sys.stdin.readline()  # held here, its answer unsent, until the test kills it
        return store(self, key, resp)

    OnceApp._store = held  # type: ignore[method-assign]
    settings = Settings(
        database_url=url,
        slack_bot_token=token,
        slack_signing_secret=secret,
        slack={"api_url": api},
        workers=1,
    )
    bot = Bot.build(settings, poll=60)  # no worker started: nothing runs the effects
    url = bot.start_http() + "/slack/events"
    serving.set()
    print("url", url, flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main(*sys.argv[1:5])
