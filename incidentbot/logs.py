"""Logging set-up: one line per record, ``key=value`` fields, and secrets masked.

Secrets must never reach logs, whoever logs them (our code, Bolt, slack_sdk, httpx): the
filter runs the redactor over every formatted message on its way to the handler.
"""

from __future__ import annotations

import logging
import sys

from incidentbot.ledger.redact import redact_text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_text is None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure(level: str = "INFO") -> None:
    """Send logs to stderr as ``time level logger message``, secrets masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
