"""Conformance checks against PagerDuty's own API descriptions (OpenAPI 3), or the contract.

Every logged call can be checked: the endpoint exists in the REST or Events description with
that method; query parameters are declared, typed as described and present when required;
described headers are sent (``Accept``, ``From`` where writes need it); credentials are sent
where the description asks for them; the JSON body validates against the request schema; and
the sandbox's answer validates against the response schema documented for its status, where
one is documented. ``check_request_log`` is the one-line assertion for bot tests.

The repository carries a compact contract derived from PagerDuty's descriptions
(``contract.py``; the files themselves carry no licence statement): the same checks, on the
endpoints the sandbox serves, with the fields we send and read. Pointed at the full files
(``$INCIDENTBOT_SPECS_DIR``), the checks use them instead. The full REST description is large
(2.7 MB), so each document is parsed and prepared once per process. Preparing applies what
OpenAPI 3 says and the compact validator shared with the Slack sandbox does not know
(``nullable``; ``format: date-time``, checked by pattern) and the ``ERRATA`` below: places
where the description contradicts itself or what PagerDuty sends, each written down rather
than loosened in general. The contract is derived from prepared descriptions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from incidentbot.sandbox.pagerduty.api import EVENTS, REST
from incidentbot.sandbox.pagerduty.log import PagerDutyRequest
from incidentbot.sandbox.slack.schema import resolve, validate
from incidentbot.sandbox.slack.spec import Problem
from incidentbot.sandbox.specs import SpecUnavailable, find_specs_dir

__all__ = [
    "CONTRACT",
    "ERRATA",
    "EVENTS_SPEC",
    "REST_SPEC",
    "PagerDutySpec",
    "Problem",
    "SpecUnavailable",
    "check_request_log",
    "load_spec",
]

REST_SPEC = "pagerduty_rest_openapiv3.json"
EVENTS_SPEC = "pagerduty_events_v2_openapiv3.json"
CONTRACT = "pagerduty_contract.json"  # what the repository carries (see contract.py)
CONTRACT_MARK = "x-incidentbot-contract"
DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$"

# (where, what is changed, why) - applied to the loaded documents, listed for reviewers.
ERRATA: tuple[tuple[str, str, str], ...] = (
    (
        "IncidentBody.details",
        "object -> object or string",
        "the description's own POST /incidents example, and PagerDuty, send a string",
    ),
    (
        "AcknowledgeLogEntry.type",
        "enum acknowledgement_log_entry -> acknowledge_log_entry",
        "it contradicts LogEntry.type, which it extends; PagerDuty sends acknowledge_log_entry",
    ),
    (
        "Content-Type header parameter",
        "required only on requests with a body",
        "described as required on every GET, where PagerDuty and its client send none",
    ),
    (
        "Service.escalation_policy, Service.integrations[], Oncall.user",
        "reference -> reference or full object",
        "include[]=escalation_policies / integrations / users expands them, as documented for "
        "the include[] parameters, but these schemas allow only references",
    ),
    (
        "PUT /incidents/{id} responses",
        "400 added, with the error schema of the others",
        "PagerDuty refuses e.g. resolving a resolved incident with 400 Arguments Caused Error",
    ),
)
# (schema, property, full object schema) for the include[] expansions above
_EXPANDABLE = (
    ("Service", "escalation_policy", "EscalationPolicy"),
    ("Service", "integrations", "Integration"),
    ("Oncall", "user", "User"),
)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _alias_list_refs(doc: dict[str, Any]) -> None:
    """Point refs that step through a list (``#/components/schemas/Tag/allOf/0``) at a copy
    of their target under ``#/x-sandbox-refs``, since the shared resolver walks objects only."""
    aliases: dict[str, Any] = {}
    refs = [n for n in _walk(doc) if isinstance(n.get("$ref"), str)]
    for node in refs:
        ref = node["$ref"]
        target: Any = doc
        through_list = False
        for part in ref.removeprefix("#/").split("/"):
            if isinstance(target, list):
                target, through_list = target[int(part)], True
            else:
                target = target[part.replace("~1", "/").replace("~0", "~")]
        if through_list:
            name = re.sub(r"[^A-Za-z0-9_]", "_", ref.removeprefix("#/"))
            aliases[name] = target
            node["$ref"] = f"#/x-sandbox-refs/{name}"
    doc["x-sandbox-refs"] = aliases


def prepare(doc: dict[str, Any]) -> None:
    """Rewrite OpenAPI 3 idioms into the validator's subset, in place (once per document)."""
    _alias_list_refs(doc)
    for node in _walk(doc):
        if node.get("nullable") is True and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        if node.get("format") == "date-time" and "pattern" not in node:
            node["pattern"] = DATE_TIME
    schemas = doc.get("components", {}).get("schemas", {})
    if "IncidentBody" in schemas:
        details = schemas["IncidentBody"]["properties"]["details"]
        details["type"] = ["object", "string"]
    if "AcknowledgeLogEntry" in schemas:
        schemas["AcknowledgeLogEntry"]["allOf"][1]["properties"]["type"]["enum"] = [
            "acknowledge_log_entry"
        ]
    for name, prop, full in _EXPANDABLE:
        if name not in schemas:
            continue
        node = schemas[name]
        props = node["properties"] if "properties" in node else node["allOf"][1]["properties"]
        target = props[prop]["items"] if props[prop].get("type") == "array" else props[prop]
        ref = dict(target)
        target.clear()
        target["oneOf"] = [ref, {"$ref": f"#/components/schemas/{full}"}]
    update = doc.get("paths", {}).get("/incidents/{id}", {}).get("put")
    if update is not None:
        update["responses"].setdefault("400", update["responses"]["404"])


@dataclass(frozen=True)
class Operation:
    api: str
    method: str
    template: str  # as the sandbox serves it, e.g. /v2/enqueue
    spec_path: str  # as the description writes it, e.g. /enqueue
    doc: dict[str, Any]
    body: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")


class PagerDutySpec:
    """Both descriptions, indexed by ``(api, "METHOD /template")`` as the sandbox serves them."""

    def __init__(self, rest_doc: dict[str, Any], events_doc: dict[str, Any]) -> None:
        self.docs = {REST: rest_doc, EVENTS: events_doc}
        self.operations: dict[tuple[str, str], Operation] = {}
        for api, doc in self.docs.items():
            if not doc.get(CONTRACT_MARK):  # the contract was derived from prepared ones
                prepare(doc)
            prefix = urlparse(doc.get("servers", [{}])[0].get("url", "")).path.rstrip("/")
            for spec_path, item in doc["paths"].items():
                shared = item.get("parameters", [])
                for method, body in item.items():
                    if method not in ("get", "put", "post", "patch", "delete"):
                        continue
                    params = tuple(
                        resolve(p["$ref"], doc) if "$ref" in p else p
                        for p in (*shared, *body.get("parameters", []))
                    )
                    op = Operation(
                        api, method.upper(), prefix + spec_path, spec_path, doc, body, params
                    )
                    self.operations[(api, op.key)] = op
        self._patterns = [
            (api, _template_regex(op.template), op) for (api, _), op in self.operations.items()
        ]

    @classmethod
    def load(cls, directory: Path | None = None) -> PagerDutySpec:
        """From ``directory`` (default: ``find_specs_dir()``): the full descriptions when both
        are there, else the contract derived from them."""
        where = directory or find_specs_dir()
        if (where / REST_SPEC).is_file() and (where / EVENTS_SPEC).is_file():
            rest = json.loads((where / REST_SPEC).read_text(encoding="utf-8"))
            events = json.loads((where / EVENTS_SPEC).read_text(encoding="utf-8"))
            return cls(rest, events)
        if not (where / CONTRACT).is_file():
            raise SpecUnavailable(
                f"neither {CONTRACT} nor {REST_SPEC} and {EVENTS_SPEC} in {where}"
            )
        contract = json.loads((where / CONTRACT).read_text(encoding="utf-8"))
        return cls(contract[REST], contract[EVENTS])

    def operation(self, api: str, key: str) -> Operation | None:
        return self.operations.get((api, key))

    def missing_endpoints(self, endpoints: Iterable[tuple[str, str]]) -> list[str]:
        """Served ``(api, "METHOD /template")`` pairs the descriptions do not have."""
        return sorted(
            f"{api} {key}" for api, key in set(endpoints) if (api, key) not in self.operations
        )

    # -- requests -------------------------------------------------------------------------

    def check_request(self, entry: PagerDutyRequest) -> list[Problem]:
        op = self.operation(entry.api, entry.method)
        if op is None:
            method, _, path = entry.method.partition(" ")
            described = any(
                api == entry.api and o.method == method and rx.match(path)
                for api, rx, o in self._patterns
            )
            kind = "unserved_endpoint" if described else "unknown_endpoint"
            return [Problem(entry.seq, entry.method, kind, f"{entry.api} API: {entry.path}")]
        problems: list[Problem] = []

        def report(kind: str, detail: str) -> None:
            problems.append(Problem(entry.seq, entry.method, kind, detail))

        declared = {p["name"]: p for p in op.parameters if p.get("in") == "query"}
        for name, value in entry.args.items():
            param = declared.get(name)
            if param is None:
                report("undeclared_parameter", repr(name))
                continue
            for error in _check_value(value, param.get("schema", {}), op.doc):
                report("parameter_type", f"{name}: {error}")
        for param in op.parameters:
            where, name = param.get("in"), param["name"]
            if where == "query" and param.get("required") and name not in entry.args:
                report("missing_required_parameter", name)
            if where != "header":
                continue
            value = entry.headers.get(name.lower())
            needed = param.get("required") and (
                name.lower() != "content-type" or entry.body is not None
            )
            if value is None:
                if needed:
                    report("missing_required_header", name)
                continue
            if name.lower() == "content-type":  # the media type; parameters such as charset aside
                value = value.split(";")[0].strip()
            for error in validate(value, param.get("schema", {}), op.doc, f"header {name}"):
                report("header_value", error)
        if self._needs_credentials(op) and entry.token_source is None:
            report("missing_credentials", "no Authorization header")
        problems += self._check_body(entry, op)
        return problems

    def _needs_credentials(self, op: Operation) -> bool:
        security = op.body.get("security", op.doc.get("security", []))
        return bool(security)

    def _check_body(self, entry: PagerDutyRequest, op: Operation) -> list[Problem]:
        described = op.body.get("requestBody")
        if described is not None and "$ref" in described:
            described = resolve(described["$ref"], op.doc)
        if entry.body is None:
            if described and described.get("required"):
                return [Problem(entry.seq, entry.method, "missing_body", "a JSON body is required")]
            return []
        if described is None:
            return [Problem(entry.seq, entry.method, "unexpected_body", "no body is described")]
        schema = described.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return []
        return [
            Problem(entry.seq, entry.method, "body_schema", e)
            for e in validate(entry.body, schema, op.doc)
        ]

    # -- responses ------------------------------------------------------------------------

    def check_response(self, entry: PagerDutyRequest) -> list[Problem]:
        """The sandbox's answer against the schema documented for its status, if any."""
        op = self.operation(entry.api, entry.method)
        if op is None:
            return []
        responses = op.body.get("responses", {})
        status = str(entry.status)
        described = next(
            (responses[k] for k in (status, f"{status[0]}XX", "default") if k in responses), None
        )
        if described is None:
            documented = ", ".join(sorted(responses))
            return [
                Problem(
                    entry.seq,
                    entry.method,
                    "undocumented_status",
                    f"{status} (documented: {documented})",
                )
            ]
        if "$ref" in described:
            described = resolve(described["$ref"], op.doc)
        schema = described.get("content", {}).get("application/json", {}).get("schema")
        if schema is None or entry.response is None:
            return []
        return [
            Problem(entry.seq, entry.method, "response_schema", e)
            for e in validate(entry.response, schema, op.doc)
        ]


def _coerce(text: str, kind: str) -> Any:
    """A query string value as the type it is described with (``None``: it is not one)."""
    if kind == "integer":
        return int(text) if text.lstrip("-").isdigit() else None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return None
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower())
    return text


def _check_value(value: Any, schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """Query values are text; ``name[]`` values are lists, checked item by item."""
    if "$ref" in schema:
        schema = resolve(schema["$ref"], doc)
    values = value if isinstance(value, list) else [value]
    kind = schema.get("type")
    item_schema = schema.get("items", {}) if kind == "array" else schema
    item_kind = item_schema.get("type", "string")
    errors = []
    for text in values:
        coerced = _coerce(str(text), item_kind if isinstance(item_kind, str) else "string")
        if coerced is None:
            errors.append(f"{text!r} is not a {item_kind}")
            continue
        errors += validate(coerced, item_schema, doc, "$")
    return errors


@lru_cache(maxsize=2)
def _default_spec(directory: str) -> PagerDutySpec:
    return PagerDutySpec.load(Path(directory))


def load_spec() -> PagerDutySpec:
    """The contract (or both descriptions) from ``find_specs_dir()``, once per process."""
    return _default_spec(str(find_specs_dir()))


def check_request_log(
    log: Iterable[PagerDutyRequest | dict[str, Any]], spec: PagerDutySpec | None = None
) -> list[Problem]:
    """Every problem in a request log: ``[]`` means everything sent and answered conforms.

    Accepts ``sandbox.requests()`` or the JSON of ``GET /_sandbox/log``. Calls that met an
    injected fault keep their request check but not their response check (a 429 or a held
    answer is not a documented response).
    """
    spec = spec or load_spec()
    problems: list[Problem] = []
    for item in log:
        entry = item if isinstance(item, PagerDutyRequest) else PagerDutyRequest.from_json(item)
        problems += spec.check_request(entry)
        if entry.fault is None:
            problems += spec.check_response(entry)
    return problems
