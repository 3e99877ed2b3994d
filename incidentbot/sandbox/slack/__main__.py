"""Run the local Slack-compatible server on its own: ``python -m incidentbot.sandbox.slack``.

For trying a bot by hand: it prints the base URL, the bot token and the seeded ids, then
serves until interrupted. The transcript is at ``/_sandbox/transcript``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from incidentbot.sandbox.slack.server import DEFAULT_SIGNING_SECRET, SlackSandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m incidentbot.sandbox.slack")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--bot-url", default=None, help="where to send signed requests")
    parser.add_argument("--signing-secret", default=DEFAULT_SIGNING_SECRET)
    parser.add_argument("--rate-limits", action="store_true", help="enforce Slack's limits")
    args = parser.parse_args(argv)
    sandbox = SlackSandbox(
        port=args.port,
        bot_url=args.bot_url,
        signing_secret=args.signing_secret,
        rate_limits=args.rate_limits,
    )
    sandbox.start()
    sys.stdout.write(json.dumps(sandbox.describe(), indent=2) + "\n")
    sys.stdout.write(f"Slack sandbox serving at {sandbox.base_url} (Ctrl-C to stop)\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
