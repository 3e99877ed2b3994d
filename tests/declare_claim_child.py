"""A bot process that stops dead inside a declare's transaction, after the request's claim and
the incident were written and before they commit (tests/test_declare_claim.py kills it there).

Usage: python -m tests.declare_claim_child DATABASE_URL SLACK_API_URL BOT_TOKEN SIGNING_SECRET
Prints ``url <bot url>`` once it serves, then ``inside`` when a declare reaches the pause.
"""

from __future__ import annotations

import sys
import threading

from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.usecases import incidents as uc


def main(url: str, api: str, token: str, secret: str) -> None:
    queued = uc.declare_effects
    serving = threading.Event()  # the warm-up's own declare (rolled back) is not held

    def then_stop(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = queued(*args, **kwargs)  # the last write of the declare's transaction
        if serving.is_set():
            print("inside", flush=True)
            sys.stdin.readline()  # held here until the test kills the process
        return out

    uc.declare_effects = then_stop
    serve_until_killed(url, api, token, secret, serving)


def serve_until_killed(
    url: str, api: str, token: str, secret: str, serving: threading.Event
) -> None:
    """Serve Slack over HTTP with no worker (nothing runs the effects), set ``serving``, print
    ``url <bot url>``, and wait for the test to kill the process."""
    settings = Settings(
        database_url=url,
        slack_bot_token=token,
        slack_signing_secret=secret,
        slack={"api_url": api},
        workers=1,
    )
    bot = Bot.build(settings, poll=60)
    url = bot.start_http() + "/slack/events"
    serving.set()
    print("url", url, flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main(*sys.argv[1:5])
