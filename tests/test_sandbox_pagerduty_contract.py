"""PagerDuty's compact contract: what it keeps, what it leaves out, and the script that makes it.

The full descriptions are not in the repository (no licence statement), so the derivation is
tested on a small description written here in PagerDuty's style, with the shapes the errata
correct; the vendored contract is tested for what the sandbox serves.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from incidentbot.sandbox.pagerduty import PagerDutyRequest
from incidentbot.sandbox.pagerduty.app import ENDPOINTS
from incidentbot.sandbox.pagerduty.contract import READ, derive
from incidentbot.sandbox.pagerduty.spec import (
    CONTRACT,
    CONTRACT_MARK,
    ERRATA,
    PagerDutySpec,
    check_request_log,
)
from incidentbot.sandbox.specs import VENDORED_DIR

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pagerduty-contract"
PROSE = {"description", "example", "examples", "summary", "title", "x-pd-requires-scope"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def reference(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"A {kind} reference.",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string", "enum": [kind]},
            "self": {"type": "string", "description": "Its API URL."},
        },
        "required": ["type", "id"],
    }


def rest_doc() -> dict[str, Any]:
    json_of = lambda schema: {"content": {"application/json": {"schema": schema}}}  # noqa: E731
    error = json_of({"type": "object", "properties": {"error": {"type": "object"}}})
    return {
        "openapi": "3.0.2",
        "servers": [{"url": "https://api.pagerduty.example"}],
        "security": [{"api_key": []}],
        "paths": {
            "/services": {
                "get": {
                    "summary": "List services",
                    "description": "Prose that stays behind.",
                    "parameters": [{"$ref": "#/components/parameters/limit"}],
                    "responses": {
                        "200": {
                            "description": "A page of services.",
                            **json_of(
                                {
                                    "allOf": [
                                        ref("Pagination"),
                                        {
                                            "type": "object",
                                            "properties": {
                                                "services": {
                                                    "type": "array",
                                                    "items": ref("Service"),
                                                }
                                            },
                                            "required": ["services"],
                                        },
                                    ]
                                }
                            ),
                            "examples": {"response": {"value": {"services": []}}},
                        },
                        "401": {"$ref": "#/components/responses/Unauthorized"},
                    },
                }
            },
            "/incidents/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "put": {
                    "parameters": [
                        {
                            "name": "Content-Type",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string", "enum": ["application/json"]},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        **json_of(
                            {
                                "type": "object",
                                "properties": {
                                    "incident": {
                                        "type": "object",
                                        "properties": {
                                            "type": {"type": "string", "enum": ["incident"]},
                                            "status": {"type": "string"},
                                            "body": ref("IncidentBody"),
                                        },
                                        "required": ["type"],
                                    }
                                },
                                "required": ["incident"],
                            }
                        ),
                    },
                    "responses": {
                        "200": json_of({"type": "object"}),
                        "404": {"description": "Not found", **error},
                    },
                },
            },
            "/incidents/{id}/alerts": {"get": {"responses": {"200": json_of({})}}},
        },
        "components": {
            "parameters": {
                "limit": {
                    "name": "limit",
                    "in": "query",
                    "description": "Page size.",
                    "schema": {"type": "integer"},
                }
            },
            "responses": {"Unauthorized": {"description": "Caller did not supply credentials"}},
            "schemas": {
                "Tag": {
                    "allOf": [{"type": "object", "properties": {"summary": {"type": "string"}}}]
                },
                "Pagination": {
                    "type": "object",
                    "properties": {"more": {"type": "boolean"}, "limit": {"type": "integer"}},
                },
                "Service": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Tag/allOf/0"},
                        {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string", "readOnly": True},
                                "type": {"type": "string", "enum": ["service"]},
                                "name": {"type": "string"},
                                "auto_resolve_timeout": {"type": "integer", "nullable": True},
                                "escalation_policy": ref("EscalationPolicyReference"),
                                "integrations": {
                                    "type": "array",
                                    "items": ref("IntegrationReference"),
                                },
                                "created_at": {"type": "string", "format": "date-time"},
                                "parent": ref("Service"),
                            },
                            "required": ["type", "escalation_policy"],
                        },
                    ]
                },
                "EscalationPolicyReference": reference("escalation_policy_reference"),
                "IntegrationReference": reference("integration_reference"),
                "EscalationPolicy": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["escalation_policy"]},
                        "name": {"type": "string"},
                        "on_call_handoff_notifications": {"type": "string"},
                    },
                    "required": ["type", "name"],
                },
                "Integration": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "integration_key": {"type": "string", "nullable": True},
                    },
                },
                "IncidentBody": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["incident_body"]},
                        "details": {"type": "object"},
                    },
                    "required": ["type"],
                },
            },
        },
    }


def events_doc() -> dict[str, Any]:
    return {
        "openapi": "3.0.0",
        "servers": [{"url": "https://events.pagerduty.example/v2"}],
        "paths": {
            "/enqueue": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "routing_key": {"type": "string"},
                                        "event_action": {"enum": ["trigger", "resolve"]},
                                        "payload": ref("Payload"),
                                    },
                                    "required": ["routing_key", "event_action"],
                                }
                            }
                        },
                    },
                    "responses": {"202": {"description": "Accepted"}, "400": {}},
                }
            }
        },
        "components": {
            "schemas": {
                "Payload": {
                    "type": "object",
                    "properties": {
                        "summary": {"type": "string"},
                        "custom_details": {"type": "object", "description": "Anything."},
                    },
                    "required": ["summary"],
                }
            }
        },
    }


def walk(node: Any, *, names: bool = False) -> Iterator[tuple[str, Any]]:
    """Every keyword in a document (``names``: the keys are property or path names)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not names:
                yield key, value
            yield from walk(value, names=not names and key in ("properties", "paths"))
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def served() -> list[tuple[str, str]]:
    return [(e.api, e.key) for e in ENDPOINTS]


def entry(method: str, *, api: str = "rest", **fields: Any) -> PagerDutyRequest:
    base: dict[str, Any] = {
        "seq": 1,
        "method": method,
        "http_method": method.split()[0],
        "args": {},
        "user": None,
        "token_source": "header",
        "content_type": "none",
        "status": 200,
        "response": None,
        "started_at": 0.0,
        "duration_s": 0.0,
        "fault": None,
        "headers": {},
        "api": api,
        "path": method.split()[1],
    }
    return PagerDutyRequest(**{**base, **fields})


def test_the_derivation_keeps_what_is_checked_and_leaves_the_rest() -> None:
    contract = derive(rest_doc(), events_doc(), served())
    rest = contract["rest"]
    assert rest[CONTRACT_MARK] == 1 and "components" not in rest
    assert not PROSE & {key for key, _ in walk(contract["rest"])}
    assert not PROSE & {key for key, _ in walk(contract["events"])}
    assert not any(key == "$ref" for key, _ in walk(rest))  # every schema inlined
    # Described but not served: named, nothing more.
    assert rest["paths"]["/incidents/{id}/alerts"] == {"get": {}}
    listing = rest["paths"]["/services"]["get"]
    assert listing["parameters"] == [
        {"name": "limit", "in": "query", "schema": {"type": "integer"}}
    ]
    assert listing["responses"]["401"] == {}  # documented, without a body
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(page["properties"]) == {"more", "limit", "services"}  # allOf merged
    service = page["properties"]["services"]["items"]
    # Required and read fields stay, typed; the others go (Service reads no created_at).
    assert set(service["properties"]) == {
        "summary",
        "id",
        "type",
        "name",
        "escalation_policy",
        "integrations",
    }
    assert service["required"] == ["type", "escalation_policy"]
    assert service["properties"]["type"] == {"type": "string", "enum": ["service"]}
    # The include[] erratum: a reference or the full object, each trimmed the same way.
    policy = service["properties"]["escalation_policy"]["oneOf"]
    assert policy[0]["required"] == ["type", "id"]
    assert set(policy[1]["properties"]) == {"type", "name"}
    integration = service["properties"]["integrations"]["items"]["oneOf"][1]
    assert integration["properties"]["integration_key"] == {"type": ["string", "null"]}
    update = rest["paths"]["/incidents/{id}"]["put"]
    assert [p["name"] for p in update["parameters"]] == ["id", "Content-Type"]
    assert update["responses"]["400"] == update["responses"]["404"]  # the PUT erratum
    body = update["requestBody"]["content"]["application/json"]["schema"]
    details = body["properties"]["incident"]["properties"]["body"]["properties"]["details"]
    assert details == {"type": ["object", "string"]}  # the IncidentBody erratum
    enqueue = contract["events"]["paths"]["/enqueue"]["post"]
    payload = enqueue["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert set(payload["payload"]["properties"]) == {"summary", "custom_details"}  # we send it
    assert enqueue["responses"] == {"202": {}, "400": {}}
    assert contract["errata"] == [where for where, _, _ in ERRATA]


def test_a_derived_contract_checks_like_the_description() -> None:
    rest, events = rest_doc(), events_doc()
    full = PagerDutySpec(copy.deepcopy(rest), copy.deepcopy(events))
    contract = derive(rest, events, served())
    small = PagerDutySpec(contract["rest"], contract["events"])
    log = [
        entry(
            "GET /services",
            args={"limit": "ten", "colour": "red"},
            response={
                "services": [
                    {"type": "service", "id": 7},
                    {
                        "type": "service",
                        "escalation_policy": {"type": "escalation_policy", "name": "P"},
                    },
                ]
            },
        ),
        entry("GET /services", token_source=None, status=418, response={}),
        entry("GET /incidents/PX/alerts", path="/incidents/PX/alerts"),
        entry("GET /nowhere", path="/nowhere"),
        entry(
            "PUT /incidents/{id}",
            body={
                "incident": {
                    "type": "incident",
                    "body": {"type": "incident_body", "details": "text"},
                }
            },
            status=400,
        ),
        entry(
            "POST /v2/enqueue",
            api="events",
            body={"routing_key": "k", "event_action": "poke"},
            headers={},
            status=202,
        ),
    ]
    found = sorted((p.method, p.kind, p.detail) for p in check_request_log(log, small))
    assert found == sorted((p.method, p.kind, p.detail) for p in check_request_log(log, full))
    assert found == sorted(
        [
            ("GET /services", "undeclared_parameter", "'colour'"),
            ("GET /services", "parameter_type", "limit: 'ten' is not a integer"),
            ("GET /services", "response_schema", "$.services[0].id: expected string, got int"),
            (
                "GET /services",
                "response_schema",
                "$.services[0]: missing required 'escalation_policy'",
            ),
            ("GET /services", "missing_credentials", "no Authorization header"),
            ("GET /services", "undocumented_status", "418 (documented: 200, 401)"),
            ("GET /incidents/PX/alerts", "unserved_endpoint", "rest API: /incidents/PX/alerts"),
            ("GET /nowhere", "unknown_endpoint", "rest API: /nowhere"),
            ("PUT /incidents/{id}", "missing_required_header", "Content-Type"),
            (
                "POST /v2/enqueue",
                "body_schema",
                "$.event_action: 'poke' is not one of ['trigger', 'resolve']",
            ),
        ]
    )


def test_the_vendored_contract_covers_what_the_sandbox_serves() -> None:
    contract = json.loads((VENDORED_DIR / CONTRACT).read_text(encoding="utf-8"))
    for endpoint in ENDPOINTS:
        doc = contract[endpoint.api]
        prefix = "/v2" if endpoint.api == "events" else ""
        method, _, template = endpoint.key.partition(" ")
        operation = doc["paths"][template.removeprefix(prefix)][method.lower()]
        assert operation["responses"], endpoint.key  # served: described in full
    described = sum(
        len(ops) for api in ("rest", "events") for ops in contract[api]["paths"].values()
    )
    detailed = sum(
        1 for api in ("rest", "events") for ops in contract[api]["paths"].values()
        for op in ops.values() if op
    )  # fmt: skip
    assert detailed == len(ENDPOINTS) < described
    # Regenerate it when what we read changes (scripts/pagerduty-contract).
    assert contract["read"] == {name: list(fields) for name, fields in READ.items()}
    assert contract["errata"] == [where for where, _, _ in ERRATA]
    assert set(contract["sources"]) == {"rest", "events"}
    assert not PROSE & {key for key, _ in walk(contract["rest"])}


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_the_script_writes_the_contract_from_the_full_files(tmp_path: Path) -> None:
    rest, events = tmp_path / "rest.json", tmp_path / "events.json"
    rest.write_text(json.dumps(rest_doc()))
    events.write_text(json.dumps(events_doc()))
    out = tmp_path / "contract.json"
    done = run_script(str(rest), str(events), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stderr
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(derive(rest_doc(), events_doc(), served(), {
        "rest": f"rest.json sha256:{hashlib.sha256(rest.read_bytes()).hexdigest()}",
        "events": f"events.json sha256:{hashlib.sha256(events.read_bytes()).hexdigest()}",
    })))  # fmt: skip
    assert (
        PagerDutySpec(written["rest"], written["events"]).missing_endpoints(
            [("rest", "GET /services"), ("events", "POST /v2/enqueue")]
        )
        == []
    )
    # Bad input: a clear message, and the contract is left as it was.
    before = out.read_bytes()
    notes = tmp_path / "notes.md"
    notes.write_text("# not JSON\n")
    refused = run_script(str(notes), str(events), "-o", str(out))
    assert refused.returncode == 2
    assert f"cannot read {notes}" in refused.stderr
    refused = run_script(str(events), str(tmp_path / "missing.json"), "-o", str(out))
    assert refused.returncode == 2 and "missing.json" in refused.stderr
    (tmp_path / "list.json").write_text("[]")
    refused = run_script(str(tmp_path / "list.json"), str(events), "-o", str(out))
    assert refused.returncode == 2 and "is not an OpenAPI description" in refused.stderr
    assert out.read_bytes() == before
