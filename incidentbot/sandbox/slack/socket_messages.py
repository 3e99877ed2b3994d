"""Socket Mode's messages and records: envelopes, acks as delivered, connections, strays.

Kept apart from the server (``socket_mode``) so the driver's side can build envelopes and read
deliveries without the WebSocket machinery. Field names and shapes follow what Slack sends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_CONNECTIONS = 10
ENVELOPE_TYPES = ("slash_commands", "interactive", "events_api")
# Interactions whose ack may carry an answer (a modal's response_action, a menu's options).
RESPONSE_PAYLOAD_INTERACTIONS = ("view_submission", "block_suggestion")
DEBUG_HOST = "applink-sandbox"
APPROXIMATE_CONNECTION_TIME_S = 18060  # what Slack reports: a refresh comes after ~5 hours


@dataclass
class Envelope:
    """One delivery as Slack wraps it; a retried event gets a new envelope, same event_id."""

    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    retry_attempt: int = 0
    retry_reason: str = ""
    envelope_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if self.type not in ENVELOPE_TYPES:
            raise ValueError(f"unknown envelope type {self.type!r}; use one of {ENVELOPE_TYPES}")

    def to_json(self) -> dict[str, Any]:
        """The message as sent; only Events API envelopes carry the retry fields."""
        message: dict[str, Any] = {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.type == "events_api":
            message["retry_attempt"] = self.retry_attempt
            message["retry_reason"] = self.retry_reason
        return message


@dataclass
class Delivery:
    """What became of one envelope: acknowledged (with the ack as sent), late, or undelivered."""

    envelope: Envelope
    connection_id: str | None = None
    acked: bool = False
    ack: dict[str, Any] | None = None
    raw_ack: str | None = None
    elapsed_s: float = 0.0
    timed_out: bool = False
    error: str | None = None


@dataclass
class ConnectionRecord:
    """One WebSocket connection as the admin API shows it (open or already closed)."""

    id: str
    opened_at: float
    closed_at: float | None = None
    close_code: int | None = None
    envelopes_sent: int = 0
    acks_received: int = 0
    disconnect_reason: str | None = None


@dataclass
class StrayMessage:
    """A message from the app that acknowledged nothing pending: late, unknown or malformed."""

    connection_id: str
    text: str
    reason: str
    at: float


def hello(app_id: str, num_connections: int) -> dict[str, Any]:
    """The first message on every connection."""
    return {
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": DEBUG_HOST,
            "build_number": 1,
            "approximate_connection_time": APPROXIMATE_CONNECTION_TIME_S,
        },
        "connection_info": {"app_id": app_id},
    }


def disconnect_message(reason: str) -> dict[str, Any]:
    """Slack asking the app to reconnect (``refresh_requested``, ``warning``, ...)."""
    return {"type": "disconnect", "reason": reason, "debug_info": {"host": DEBUG_HOST}}
