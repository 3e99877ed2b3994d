"""``http.request``: call an HTTP endpoint (a node's RPC, a health check, a load balancer's
admin API) and hand its answer to later steps."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from incidentbot.ledger.actions import (
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
    classify,
    parse_retry_after,
)
from incidentbot.runbooks.actions._common import Seconds, http_url, shown
from incidentbot.runbooks.actions.base import Action, ActionContext
from incidentbot.runbooks.actions.egress_http import client as egress_client
from incidentbot.runbooks.egress import MAX_REDIRECTS, EgressRefused, policy_of

BODY_LIMIT = 64 * 1024  # bytes of the body kept in the `body` output
READ_LIMIT = 8 * 1024 * 1024  # bytes read at most (larger answers: `json` is null)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


class HttpRequestInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout: Seconds = 10.0
    expect_status: list[int] | None = None
    follow_redirects: bool = False

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().upper() in METHODS:
            return value.strip().upper()
        if isinstance(value, str):
            raise ValueError(f"unknown method {value!r}: use one of {', '.join(METHODS)}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the timeout must be longer than 0 seconds")
        return value

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list at least one status, or leave expect_status out for any 2xx")
        wrong = [code for code in value if not 100 <= code <= 599]
        if wrong:
            raise ValueError(f"{wrong[0]} is not an HTTP status (100 to 599)")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestInputs:
        if self.has_json and self.body is not None:
            raise ValueError("give `json` or `body`, not both")
        return self

    @property
    def has_json(self) -> bool:
        return "json_body" in self.model_fields_set


def _describe_json(value: Any) -> str:
    if isinstance(value, dict):
        return f"json body, {len(value)} key{'' if len(value) == 1 else 's'}"
    if isinstance(value, list):
        return f"json body, {len(value)} item{'' if len(value) == 1 else 's'}"
    return "json body"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class HttpRequest(Action):
    name = "http.request"
    description = (
        "Send an HTTP request; fails when the status is not expected (429, 408 and 5xx are "
        "retried, honouring Retry-After)."
    )
    idempotent = False
    Inputs = HttpRequestInputs
    outputs: ClassVar[dict[str, str]] = {
        "status": "the HTTP status code",
        "ok": "true for a 2xx status",
        "body": f"the response body as text (at most {BODY_LIMIT // 1024} KiB, then a note)",
        "json": "the body parsed, when the response is JSON; otherwise null",
        "elapsed_ms": "milliseconds from sending the request to the end of the body",
    }

    def plan(self, inputs: HttpRequestInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_url(self.name, inputs.url)
        line = f"{inputs.method} {shown(ctx, inputs.url)}"
        if inputs.has_json:
            line += f" ({_describe_json(inputs.json_body)})"
        elif inputs.body is not None:
            line += f" (body, {len(inputs.body.encode())} bytes)"
        return line

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        ms = o.get("elapsed_ms")
        took = f" in {ms} ms" if isinstance(ms, (int, float)) else ""
        verdict = "ok" if o.get("ok") else "not ok"
        return f"The request answered HTTP {o.get('status', '?')} ({verdict}){took}"

    def run(self, inputs: HttpRequestInputs, ctx: ActionContext) -> dict[str, Any]:
        where = f"{inputs.method} {shown(ctx, inputs.url)}"
        content: dict[str, Any] = {}
        if inputs.has_json:
            content["json"] = inputs.json_body
        elif inputs.body is not None:
            content["content"] = inputs.body.encode()
        policy_of(ctx.services).check_url(self.name, inputs.url)
        started = time.perf_counter()
        try:
            with egress_client(ctx, self.name, timeout=inputs.timeout) as client:
                request = client.build_request(
                    inputs.method, inputs.url, headers=inputs.headers, **content
                )
                response = _send(ctx, client, request, inputs.follow_redirects, where)
                try:
                    data, total = _read(response)
                finally:
                    response.close()
        except EgressRefused as exc:
            raise EgressRefused(shown(ctx, f"{where}: {exc}")) from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            raise PermanentError(shown(ctx, f"{where}: {exc}")) from None
        except httpx.HTTPError as exc:
            raise _transport_failure(ctx, where, exc) from None
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        status = response.status_code
        encoding = response.charset_encoding or "utf-8"
        text = _decode(data[:BODY_LIMIT], encoding)
        if total > BODY_LIMIT:
            shown_total = f"{total}" if total <= READ_LIMIT else f"more than {READ_LIMIT}"
            text += f"\n… [truncated: first {BODY_LIMIT} of {shown_total} bytes shown]"
        expected = inputs.expect_status
        if not (status in expected if expected else 200 <= status < 300):
            raise _status_failure(ctx, where, response, expected, text)
        parsed = None
        if total <= READ_LIMIT and _is_json(response.headers.get("content-type", "")):
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        return {
            "status": status,
            "ok": 200 <= status < 300,
            "body": text,
            "json": parsed,
            "elapsed_ms": elapsed_ms,
        }


def _send(
    ctx: ActionContext, client: httpx.Client, request: httpx.Request, follow: bool, where: str
) -> httpx.Response:
    """Send ``request``; when ``follow``, follow up to MAX_REDIRECTS redirects, one request
    each, so the egress policy checks every hop (the client itself never follows)."""
    response = client.send(request, stream=True)
    hops = 0
    while follow and response.next_request is not None:
        hops += 1
        following = response.next_request
        response.close()
        if hops > MAX_REDIRECTS:
            raise PermanentError(
                shown(
                    ctx, f"{where}: more than {MAX_REDIRECTS} redirects (last to {following.url})"
                )
            )
        try:
            response = client.send(following, stream=True)
        except EgressRefused as exc:
            raise EgressRefused(f"redirected to {following.url}: {exc}") from None
    return response


def _read(response: httpx.Response) -> tuple[bytes, int]:
    """The body, read up to READ_LIMIT bytes, and how many bytes it had (READ_LIMIT + 1 when
    it was longer)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > READ_LIMIT:
            chunks.append(chunk[: len(chunk) - (size - READ_LIMIT)])
            return b"".join(chunks), READ_LIMIT + 1
        chunks.append(chunk)
    return b"".join(chunks), size


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding, errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")


def _status_failure(
    ctx: ActionContext,
    where: str,
    response: httpx.Response,
    expected: list[int] | None,
    text: str,
) -> Exception:
    status = response.status_code
    wanted = "/".join(str(c) for c in expected) if expected else "a 2xx status"
    message = f"{where} answered {status} {response.reason_phrase} (expected {wanted})".rstrip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    location = response.headers.get("location")
    if 300 <= status < 400 and location:
        message += f": redirects to {location} (set follow_redirects: true to follow it)"
    elif first:
        message += f": {first[:200]}"
    message = shown(ctx, message)
    if status in (408, 429) or status >= 500:
        return RetryableError(message, parse_retry_after(response.headers.get("retry-after")))
    return PermanentError(message)


def _transport_failure(ctx: ActionContext, where: str, exc: httpx.HTTPError) -> Exception:
    verdict = classify(exc)
    message = shown(ctx, f"{where}: {verdict.message}")
    if verdict.kind == "retry":
        return RetryableError(message, verdict.retry_after)
    if verdict.kind == "unknown":
        return OutcomeUnknownError(message)
    return PermanentError(message)
