"""Run the local PagerDuty-compatible server alone: ``python -m incidentbot.sandbox.pagerduty``.

For trying a bot by hand: it prints the URLs, the API token, the CA certificate to trust, the
seeded ids and routing keys, then serves until interrupted. The summary is at
``/_sandbox/summary``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from incidentbot.sandbox.pagerduty.server import PagerDutySandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m incidentbot.sandbox.pagerduty")
    parser.add_argument("--port", type=int, default=8091, help="0 picks a free port")
    parser.add_argument("--webhook-url", default=None, help="where to send webhooks v3")
    parser.add_argument("--webhook-secret", default=None, help="their signing secret")
    parser.add_argument("--plain-http", action="store_true", help="no TLS (curl without a CA)")
    args = parser.parse_args(argv)
    sandbox = PagerDutySandbox(
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        tls=not args.plain_http,
    )
    sandbox.start()
    sys.stdout.write(json.dumps(sandbox.describe(), indent=2) + "\n")
    sys.stdout.write(f"PagerDuty sandbox serving at {sandbox.rest_url} (Ctrl-C to stop)\n")
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
