"""Signed links to a runbook run's page (``/runs/<id>?sig=…``, served by
:mod:`incidentbot.web.run_page`).

The link is signed (HMAC-SHA256 of the run id under a key derived from the bot's Slack token), so
only someone who saw a message carrying it can open it. Building one needs no web framework:
the run message, the postmortem and the page itself share these functions.
"""

from __future__ import annotations

import hashlib
import hmac

from incidentbot.config import Settings


def signing_key(token: str) -> bytes:
    return hashlib.sha256(b"incidentbot run page\0" + token.encode()).digest()


def signature(key: bytes, run_id: int) -> str:
    return hmac.new(key, str(run_id).encode(), hashlib.sha256).hexdigest()[:32]


def link(public_url: str, key: bytes, run_id: int) -> str:
    return f"{public_url.rstrip('/')}/runs/{run_id}?sig={signature(key, run_id)}"


def link_for(settings: Settings, run_id: int) -> str | None:
    """The run's page, or None when the bot has no public URL (or no Slack token to sign with)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    if not settings.http.public_url or not token:
        return None
    return link(settings.http.public_url, signing_key(token), run_id)
