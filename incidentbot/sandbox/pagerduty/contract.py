"""PagerDuty's compact contract: what the conformance checks need from its API descriptions.

PagerDuty publishes its OpenAPI descriptions without a licence statement, so the repository
does not carry them. It carries this contract instead (``apispecs/pagerduty_contract.json``),
derived from them by ``scripts/pagerduty-contract``:

- every path and method of both APIs, so that a call to an endpoint the sandbox does not serve
  is told apart from one PagerDuty does not have;
- for each endpoint the sandbox serves: its parameters (name, where, required, type), the
  credentials it asks for, its request body (the fields, their types, which are required) and
  its documented responses (status codes; in each answer the required fields and the fields
  ``READ`` lists, with their types).

Descriptions, examples and every other field are left out. ``spec.ERRATA`` are applied before
the derivation, so the contract is used as is. Each API's part is a small OpenAPI 3 document
with every schema inlined (no ``components``), which ``PagerDutySpec`` reads exactly as it
reads the full descriptions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from incidentbot.sandbox.pagerduty.api import EVENTS, REST
from incidentbot.sandbox.pagerduty.spec import (
    CONTRACT,
    CONTRACT_MARK,
    ERRATA,
    EVENTS_SPEC,
    REST_SPEC,
    prepare,
)
from incidentbot.sandbox.slack.schema import resolve

FORMAT = 1
METHODS = ("get", "put", "post", "patch", "delete")
# Keywords the validator checks, copied as they are.
_PLAIN = ("type", "enum", "pattern", "format", "minItems", "uniqueItems")
_SCHEMAS = "#/components/schemas/"

# The fields of PagerDuty's answers that the bot (``incidentbot.pagerduty_adapter``), the
# ``pagerduty`` client it drives (pagination, ``find``) and the sandbox's tests read, by the
# schema that declares them. A schema's required fields are kept as well; the rest are left out.
READ: dict[str, tuple[str, ...]] = {
    "Pagination": ("offset", "limit", "more", "total"),
    "Service": ("id", "type", "summary", "name", "status", "escalation_policy", "integrations"),
    "Integration": ("id", "type", "summary", "integration_key"),
    "User": ("id", "type", "summary", "name", "email"),
    "EscalationPolicy": ("id", "type", "summary", "name"),
    "Schedule": ("id", "type", "summary", "name", "time_zone"),
    "Oncall": ("escalation_policy", "user", "schedule", "escalation_level", "start", "end"),
    "Incident": (
        "id",
        "type",
        "summary",
        "incident_number",
        "title",
        "status",
        "urgency",
        "html_url",
        "incident_key",
        "created_at",
        "service",
        "assignments",
        "escalation_policy",
    ),
    "IncidentNote": ("id", "content", "created_at", "user"),
    "LogEntry": ("id", "type", "summary", "created_at"),
}


def _component(ref: str) -> str | None:
    rest = ref.removeprefix(_SCHEMAS)
    return rest if ref.startswith(_SCHEMAS) and "/" not in rest else None


def _deref(node: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = resolve(node["$ref"], doc)
    return node


def _object_like(node: dict[str, Any]) -> bool:
    return node.get("type", "object") == "object" and not any(
        k in node for k in ("oneOf", "anyOf", "items", "enum")
    )


def _flatten(node: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """``allOf`` of objects merged into one object (properties and required fields joined)."""
    if "allOf" not in node:
        return node
    parts = [_flatten(_deref(part, doc), doc) for part in node["allOf"]]
    if not all(_object_like(p) for p in parts):
        return node
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    merged["type"] = "object"
    properties: dict[str, Any] = {}
    required: list[str] = list(node.get("required", []))
    for part in parts:
        properties.update(part.get("properties", {}))
        required += [r for r in part.get("required", []) if r not in required]
        if part.get("additionalProperties") is False:
            merged["additionalProperties"] = False
    merged["properties"] = {**properties, **node.get("properties", {})}
    if required:
        merged["required"] = required
    return merged


class _Reducer:
    """Inlines and trims schemas of one description."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def schema(
        self,
        node: dict[str, Any],
        *,
        request: bool,
        name: str | None = None,
        seen: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        if "$ref" in node:
            ref = node["$ref"]
            if ref in seen:  # a recursive schema: checked down to here
                return {}
            target = resolve(ref, self.doc)
            return self.schema(
                target, request=request, name=_component(ref) or name, seen=(*seen, ref)
            )
        node = _flatten(node, self.doc)
        out: dict[str, Any] = {k: node[k] for k in _PLAIN if k in node}
        for combinator in ("oneOf", "anyOf", "allOf"):
            if combinator in node:
                out[combinator] = [
                    self.schema(o, request=request, seen=seen) for o in node[combinator]
                ]
        extra = node.get("additionalProperties")
        if isinstance(extra, bool):
            out["additionalProperties"] = extra
        elif isinstance(extra, dict):
            out["additionalProperties"] = self.schema(extra, request=request, seen=seen)
        properties = node.get("properties", {})
        required = list(node.get("required", []))
        if properties:
            trim = not request and name is not None and extra is not False
            wanted = set(required) | set(READ.get(name or "", ()))
            out["properties"] = {
                key: self.schema(value, request=request, seen=seen)
                for key, value in properties.items()
                if not trim or key in wanted
            }
        if required:
            out["required"] = required
        items = node.get("items")
        if isinstance(items, list):
            out["items"] = [self.schema(i, request=request, seen=seen) for i in items]
        elif isinstance(items, dict):
            out["items"] = self.schema(items, request=request, seen=seen)
        return out

    def operation(
        self, shared: list[dict[str, Any]], body: dict[str, Any], *, served: bool
    ) -> dict[str, Any]:
        """An operation's contract; one the sandbox does not serve is only named."""
        if not served:
            return {}
        out: dict[str, Any] = {"parameters": []}
        for param in (*shared, *body.get("parameters", [])):
            param = _deref(param, self.doc)
            entry = {"name": param["name"], "in": param["in"]}
            if param.get("required"):
                entry["required"] = True
            entry["schema"] = self.schema(param.get("schema", {}), request=True)
            out["parameters"].append(entry)
        if "security" in body:
            out["security"] = body["security"]
        if "requestBody" in body:
            described = _deref(body["requestBody"], self.doc)
            out["requestBody"] = {"required": bool(described.get("required")), "content": {}}
            schema = described.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                reduced = self.schema(schema, request=True)
                out["requestBody"]["content"]["application/json"] = {"schema": reduced}
        out["responses"] = {}
        for status, response in body.get("responses", {}).items():
            described = _deref(response, self.doc)
            schema = described.get("content", {}).get("application/json", {}).get("schema")
            out["responses"][status] = (
                {"content": {"application/json": {"schema": self.schema(schema, request=False)}}}
                if schema is not None
                else {}
            )
        return out


def derive_api(doc: dict[str, Any], served: set[str]) -> dict[str, Any]:
    """One API's contract from its (prepared) description; ``served``: ``"METHOD /template"``
    keys as the sandbox serves them."""
    servers = [{"url": s["url"]} for s in doc.get("servers", [])[:1]]
    prefix = urlparse(servers[0]["url"] if servers else "").path.rstrip("/")
    reducer = _Reducer(doc)
    paths: dict[str, Any] = {}
    for spec_path, item in sorted(doc["paths"].items()):
        shared = item.get("parameters", [])
        paths[spec_path] = {
            method: reducer.operation(
                shared, body, served=f"{method.upper()} {prefix}{spec_path}" in served
            )
            for method, body in item.items()
            if method in METHODS
        }
    out: dict[str, Any] = {CONTRACT_MARK: FORMAT, "servers": servers, "paths": paths}
    if "security" in doc:
        out["security"] = doc["security"]
    return out


def derive(
    rest_doc: dict[str, Any],
    events_doc: dict[str, Any],
    served: Iterable[tuple[str, str]],
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The whole contract from both descriptions (as loaded; prepared here, in place)."""
    keys = set(served)
    contract: dict[str, Any] = {
        "about": (
            "Derived from PagerDuty's REST and Events API v2 descriptions (PagerDuty/api-schema) "
            "by scripts/pagerduty-contract: paths, methods, parameters, required fields and the "
            "fields incidentbot reads. Regenerate it rather than editing it."
        ),
        "format": FORMAT,
        "sources": sources or {},
        "errata": [where for where, _, _ in ERRATA],
        "read": {name: list(fields) for name, fields in READ.items()},
    }
    for api, doc in ((REST, rest_doc), (EVENTS, events_doc)):
        prepare(doc)
        contract[api] = derive_api(doc, {key for a, key in keys if a == api})
    return contract


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/pagerduty-contract",
        description=f"Write {CONTRACT} from PagerDuty's full API descriptions.",
    )
    parser.add_argument("rest", type=Path, help=f"the REST API description ({REST_SPEC})")
    parser.add_argument("events", type=Path, help=f"the Events API description ({EVENTS_SPEC})")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "apispecs" / CONTRACT,
        help="where to write the contract (default: the vendored one)",
    )
    args = parser.parse_args(argv)
    docs = []
    sources = {}
    for api, path in ((REST, args.rest), (EVENTS, args.events)):
        try:
            raw = path.read_bytes()
            docs.append(json.loads(raw))
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"cannot read {path}: {exc}\n")
            return 2
        if not isinstance(docs[-1], dict) or "paths" not in docs[-1]:
            sys.stderr.write(f"{path} is not an OpenAPI description (no paths)\n")
            return 2
        sources[api] = f"{path.name} sha256:{hashlib.sha256(raw).hexdigest()}"
    from incidentbot.sandbox.pagerduty.app import ENDPOINTS  # the server, only when needed

    contract = derive(docs[0], docs[1], ((e.api, e.key) for e in ENDPOINTS), sources)
    text = json.dumps(contract, indent=1, sort_keys=True) + "\n"
    args.output.write_text(text, encoding="utf-8")
    sys.stderr.write(f"wrote {args.output} ({len(text.encode()):,} bytes)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
