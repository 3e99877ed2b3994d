"""The URLs in the settings, checked for what the clients that use them require.

A vendor API (Slack, PagerDuty, GitHub) is reached over ``https://``: a plain ``http://`` URL
would send the bot's tokens in clear, and the PagerDuty client refuses anything but https
outright (``serve`` used to die with a traceback on one). The bot's own ``http.public_url`` too:
the run links posted in Slack carry a signature. ``http://`` is accepted only where the client
accepts it and the host is this machine (the local Slack server runs on ``http://127.0.0.1``).
The database URL must name a back end the bot supports.

Messages never repeat a whole URL: one may carry a password or a key. They show its scheme and
host only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DATABASE_BACKENDS = ("sqlite", "postgresql")
DATABASE_EXAMPLES = "sqlite:///data/incidentbot.db or postgresql+psycopg://user@host/db"


@dataclass(frozen=True)
class ApiUrl:
    """One URL setting: where it is, whether loopback may use http, and why https."""

    path: str
    http_on_loopback: bool
    why: str


def _token(vendor: str) -> str:
    return f"plain http would send the bot's {vendor} token in clear"


PAGERDUTY_HTTPS = (
    "the PagerDuty client accepts only https (the local PagerDuty server serves https: set "
    "pagerduty.ca_file to its CA)"
)
API_URLS = (
    ApiUrl("slack.api_url", True, _token("Slack")),
    # The pagerduty client raises on any base URL that is not https; the local PagerDuty
    # server serves https with its own CA (pagerduty.ca_file).
    ApiUrl("pagerduty.api_url", False, PAGERDUTY_HTTPS),
    ApiUrl("pagerduty.events_url", False, PAGERDUTY_HTTPS),
    ApiUrl("action_items.github_api_url", True, _token("GitHub")),
    # Not a vendor's, but the run links posted in Slack carry a signature that opens the run's
    # page: over plain http anyone on the way could read it.
    ApiUrl("http.public_url", True, "the signed run links would travel in clear"),
)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(parts: SplitResult) -> str:
    """Scheme and host only: the rest of a URL may hold a secret."""
    host = parts.hostname or ""
    port = f":{parts.port}" if _port(parts) else ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else repr(host or "(no host)")


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def api_url_problem(spec: ApiUrl, value: str) -> str | None:
    """Why ``value`` cannot be used for ``spec`` (None: it can)."""
    if any(ch.isspace() for ch in value):
        return "is not a URL: it contains spaces"
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return f"{_shown(parts)} is not an https:// URL with a host"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        return f"{_shown(parts)}: the port is not a number between 0 and 65535"
    if scheme == "https":
        return None
    if spec.http_on_loopback and is_loopback(parts.hostname):
        return None
    why = spec.why
    if spec.http_on_loopback:
        why += " (http is accepted only for this machine: localhost, 127.0.0.1, ::1)"
    return f"{_shown(parts)} must use https://: {why}"


def database_url_problem(value: str) -> str | None:
    """Why ``value`` is not a database URL the bot can use (None: it is)."""
    try:
        url = make_url(value)
    except ArgumentError:
        return f"is not a database URL: write {DATABASE_EXAMPLES}"
    backend = url.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        return (
            f"{backend}:// is not a supported database (supported: "
            f"{', '.join(DATABASE_BACKENDS)}): write {DATABASE_EXAMPLES}"
        )
    return None


def _get(settings: Any, path: str) -> Any:
    value = settings
    for name in path.split("."):
        value = getattr(value, name, None)
    return value


def url_problems(settings: Any) -> list[tuple[str, str]]:
    """Every URL setting that cannot be used, as ``(path, message)``."""
    problems: list[tuple[str, str]] = []
    for spec in API_URLS:
        value = _get(settings, spec.path)
        if value:
            why = api_url_problem(spec, str(value))
            if why:
                problems.append((spec.path, why))
    database = getattr(settings, "database_url", None)
    if database:
        why = database_url_problem(str(database))
        if why:
            problems.append(("database_url", why))
    return problems
