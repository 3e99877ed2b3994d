"""Conformance checks against Slack's own API description (``slack_web_openapi_v2.json``).

The sandbox is only useful if it behaves like Slack, and the bot is only correct if what it
sends is what Slack accepts. So every logged call can be checked: the method exists in the
vendor's description, every argument is a declared parameter (``team_id`` counts everywhere:
Bolt and slack_sdk send it for org-wide apps, and Slack accepts it), required ones are
present, and the sandbox's answer validates against the documented response schema.
``check_request_log`` is the one-line assertion for bot tests.

The description dates from 2021. Where Slack has moved on since, the difference is written
down here, method by method, rather than loosened in general: ``SUPPLEMENT`` (methods newer
than the description), ``NEWER_ERRORS`` (error codes Slack documents today that the
description's enums lack) and ``ERRATA`` (schema details that contradict Slack's answers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from incidentbot.sandbox.slack.log import LoggedRequest
from incidentbot.sandbox.slack.schema import validate
from incidentbot.sandbox.specs import SpecUnavailable as SpecUnavailable
from incidentbot.sandbox.specs import find_specs_dir as _find_specs_dir

WEB_SPEC = "slack_web_openapi_v2.json"
EVENTS_SPEC = "slack_events_api_async_v1.json"
ALWAYS_DECLARED = frozenset({"team_id"})

# Methods newer than the 2021 description, declared from api.slack.com/methods/<name>.
SUPPLEMENT: dict[str, dict[str, Any]] = {
    "bookmarks.add": {
        "params": {
            "token": ("string", True),
            "channel_id": ("string", True),
            "title": ("string", True),
            "type": ("string", True),
            "link": ("string", False),
            "emoji": ("string", False),
            "entity_id": ("string", False),
            "access_level": ("string", False),
            "parent_id": ("string", False),
        },
        "errors": {
            "channel_not_found",
            "not_in_channel",
            "invalid_arguments",
            "invalid_bookmark_type",
            "invalid_link",
            "not_authed",
            "invalid_auth",
        },
    },
    # Socket Mode's URL, called with the app-level token (xapp-...).
    "apps.connections.open": {
        "params": {"token": ("string", True)},
        "errors": {"not_authed", "invalid_auth", "not_allowed_token_type"},
    },
}

# Error codes on today's method pages that the description's ``error`` enums do not list.
NEWER_ERRORS: dict[str, frozenset[str]] = {
    "chat.postMessage": frozenset({"invalid_blocks", "invalid_attachments"}),
    "chat.update": frozenset({"invalid_blocks", "invalid_attachments"}),
    "chat.postEphemeral": frozenset({"invalid_blocks", "invalid_attachments"}),
    "conversations.archive": frozenset({"not_in_channel"}),
    "conversations.list": frozenset({"invalid_types"}),
    "conversations.rename": frozenset({"is_archived"}),
    "reactions.add": frozenset({"channel_not_found"}),
    "usergroups.users.list": frozenset({"no_such_subteam"}),
}

# (where, what is changed, why) - applied to the loaded document, listed for reviewers.
ERRATA: tuple[tuple[str, str, str], ...] = (
    (
        "conversations.history 200 messages",
        "minItems 1 -> 0",
        "a channel without messages answers an empty list",
    ),
    (
        "every error answer",
        "may carry response_metadata",
        "Slack explains invalid_blocks / invalid_arguments in response_metadata.messages",
    ),
)


@dataclass(frozen=True)
class Problem:
    """One way a logged call (or a payload) departs from the vendor's description."""

    seq: int | None
    method: str
    kind: str
    detail: str

    def __str__(self) -> str:
        where = f"#{self.seq} " if self.seq is not None else ""
        return f"{where}{self.method}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool


def find_specs_dir() -> Path:
    """The specs directory (``incidentbot.sandbox.specs``) holding Slack's description."""
    return _find_specs_dir(WEB_SPEC)


def _apply_errata(doc: dict[str, Any]) -> None:
    history = doc["paths"]["/conversations.history"]["get"]["responses"]["200"]["schema"]
    history["properties"]["messages"]["minItems"] = 0
    for operations in doc["paths"].values():
        for operation in operations.values():
            error_schema = operation.get("responses", {}).get("default", {}).get("schema")
            if error_schema and error_schema.get("additionalProperties") is False:
                error_schema.setdefault("properties", {})["response_metadata"] = {"type": "object"}


class SlackWebSpec:
    """The Web API description, indexed by method name."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        _apply_errata(document)
        self.operations: dict[str, dict[str, Any]] = {}
        for path, operations in document["paths"].items():
            for operation in operations.values():
                self.operations[path.lstrip("/")] = operation

    @classmethod
    def load(cls, path: Path | None = None) -> SlackWebSpec:
        file = path or find_specs_dir() / WEB_SPEC
        return cls(json.loads(Path(file).read_text(encoding="utf-8")))

    def has_method(self, method: str) -> bool:
        """Whether the vendor's description documents ``method`` (the supplement aside)."""
        return method in self.operations

    def missing_methods(self, methods: Iterable[str]) -> list[str]:
        return sorted(m for m in set(methods) if not self.has_method(m))

    def parameters(self, method: str) -> dict[str, Param] | None:
        if method in self.operations:
            return {
                p["name"]: Param(p["name"], p.get("type", "string"), bool(p.get("required")))
                for p in self.operations[method].get("parameters", [])
            }
        if method in SUPPLEMENT:
            return {n: Param(n, t, r) for n, (t, r) in SUPPLEMENT[method]["params"].items()}
        return None

    def check_request(self, entry: LoggedRequest, *, strict: bool = False) -> list[Problem]:
        """Method known, arguments declared and well-typed, required ones present."""
        params = self.parameters(entry.method)
        if params is None:
            return [Problem(entry.seq, entry.method, "unknown_method", "not in the description")]
        problems = []
        if strict and not self.has_method(entry.method):
            problems.append(
                Problem(entry.seq, entry.method, "not_in_vendor_spec", "declared by SUPPLEMENT")
            )
        for name, value in entry.args.items():
            param = params.get(name)
            if param is None:
                if name not in ALWAYS_DECLARED:
                    problems.append(
                        Problem(entry.seq, entry.method, "undeclared_argument", repr(name))
                    )
            elif not _type_ok(value, param.type):
                detail = f"{name}={value!r} is not a {param.type}"
                problems.append(Problem(entry.seq, entry.method, "argument_type", detail))
        for param in params.values():
            present = (
                entry.token_source is not None
                if param.name == "token"
                else entry.args.get(param.name) not in (None, "")
            )
            if param.required and not present:
                problems.append(
                    Problem(entry.seq, entry.method, "missing_required_argument", param.name)
                )
        return problems

    def check_response(
        self, method: str, status: int, body: Any, seq: int | None = None
    ) -> list[Problem]:
        """The sandbox's answer against the documented schema (HTTP 200 answers only)."""
        if status != 200 or not isinstance(body, dict):
            return []
        if method not in self.operations:
            errors = SUPPLEMENT.get(method, {}).get("errors", set())
            if not body.get("ok") and body.get("error") not in errors:
                return [Problem(seq, method, "undocumented_error", str(body.get("error")))]
            return []
        responses = self.operations[method]["responses"]
        schema = responses.get("200" if body.get("ok") else "default", {}).get("schema")
        if schema is None:
            return []
        if not body.get("ok"):
            schema = _with_newer_errors(schema, NEWER_ERRORS.get(method, frozenset()))
        problems = []
        for error in validate(body, schema, self.doc):
            kind = "undocumented_error" if error.startswith("$.error:") else "response_schema"
            problems.append(Problem(seq, method, kind, error))
        return problems


def _with_newer_errors(schema: dict[str, Any], newer: frozenset[str]) -> dict[str, Any]:
    enum = schema.get("properties", {}).get("error", {}).get("enum")
    if not newer or enum is None:
        return schema
    properties = dict(schema["properties"])
    properties["error"] = {**properties["error"], "enum": [*enum, *sorted(newer)]}
    return {**schema, "properties": properties}


def _type_ok(value: Any, kind: str) -> bool:
    """Slack reads form values as text: ``"1"``/``"true"`` are booleans, digits integers."""
    if value is None:
        return True
    if kind == "boolean":
        return isinstance(value, bool) or str(value).lower() in ("0", "1", "true", "false")
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.lstrip("-").isdigit()
        )
    if kind == "number":
        try:
            float(value)
        except (TypeError, ValueError):
            return False
        return not isinstance(value, bool)
    return True


@lru_cache(maxsize=4)
def _default_spec(path: str) -> SlackWebSpec:
    return SlackWebSpec.load(Path(path))


def load_spec() -> SlackWebSpec:
    """The description from ``find_specs_dir()``, parsed once per process."""
    return _default_spec(str(find_specs_dir() / WEB_SPEC))


def check_request_log(
    log: Iterable[LoggedRequest | dict[str, Any]],
    spec: SlackWebSpec | None = None,
    *,
    strict: bool = False,
) -> list[Problem]:
    """Every problem in a request log: ``[]`` means everything sent and answered conforms.

    Accepts ``sandbox.requests()`` or the JSON of ``GET /_sandbox/log``. Calls that met an
    injected fault keep their request check but not their response check (a 429 or a held
    answer is not a documented response). ``strict`` also reports supplemented methods.
    """
    spec = spec or load_spec()
    problems: list[Problem] = []
    for item in log:
        entry = item if isinstance(item, LoggedRequest) else LoggedRequest.from_json(item)
        problems += spec.check_request(entry, strict=strict)
        if entry.fault is None:
            problems += spec.check_response(entry.method, entry.status, entry.response, entry.seq)
    return problems


def check_event_payload(
    payload: dict[str, Any], events_doc: dict[str, Any] | None = None
) -> list[Problem]:
    """An ``event_callback`` body against the Events API description's schema for its event."""
    doc = events_doc or json.loads((find_specs_dir() / EVENTS_SPEC).read_text(encoding="utf-8"))
    event = payload.get("event", {})
    kind = str(event.get("type", ""))
    topic = kind.replace("_", ".")
    if kind == "message":
        topic = {"group": "message.groups", "im": "message.im"}.get(
            str(event.get("channel_type")), "message.channels"
        )
    if topic not in doc["topics"]:
        return [Problem(None, kind, "unknown_event", f"no topic {topic!r}")]
    schema = doc["topics"][topic]["subscribe"]["payload"]
    return [Problem(None, kind, "event_schema", e) for e in validate(payload, schema, doc)]
