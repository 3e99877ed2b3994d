"""A bot process that stops dead after a change typed in Slack committed, with its claim, and
before its answer is sent (tests/test_change_claim.py kills it there).

Usage: python -m tests.change_claim_child DATABASE_URL SLACK_API_URL BOT_TOKEN SIGNING_SECRET
Prints ``url <bot url>`` once it serves, then ``answering`` when a request's answer is held.
"""

from __future__ import annotations

import sys
import threading

from incidentbot.slack.once import OnceApp
from tests.declare_claim_child import serve_until_killed


def main(url: str, api: str, token: str, secret: str) -> None:
    store = OnceApp._store
    serving = threading.Event()  # the warm-up's own requests are not held

    def held(self, key, resp):  # type: ignore[no-untyped-def]
        if serving.is_set():
            print("answering", flush=True)
            sys.stdin.readline()  # held here, its answer unsent, until the test kills it
        return store(self, key, resp)

    OnceApp._store = held  # type: ignore[method-assign]
    serve_until_killed(url, api, token, secret, serving)


if __name__ == "__main__":
    main(*sys.argv[1:5])
