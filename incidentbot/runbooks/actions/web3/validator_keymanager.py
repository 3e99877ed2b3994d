"""``validator.keys_list`` and ``validator.keys_delete``: a validator client's standard
keymanager API (``/eth/v1/keystores``), where the client offers one (Lodestar, Lighthouse,
Teku, Prysm, Nimbus).

- list: the public keys the client signs with (shortened in outputs);
- delete: the client stops signing with the keys and, in the same operation, returns their
  slashing-protection history (EIP-3076), which the action writes to a file. The keymanager
  API standard makes that atomic: no signature can follow the history it returns, which makes
  it the authoritative history to carry to another client. Deleting again returns the same
  history (the keys ``not_active``), so the step can run twice.

The bearer token is read from ``token_file`` at run time and sent only in the
``Authorization`` header: it is never an input value, an output, part of a message or of the
timeline. Keystores and their passwords never pass through these actions. Every request obeys
the egress policy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, field_validator

from incidentbot.ledger.actions import PermanentError, RetryableError, classify
from incidentbot.runbooks.actions._common import masked_url, shown
from incidentbot.runbooks.actions.base import Action, ActionContext, plural
from incidentbot.runbooks.actions.egress_http import client as egress_client
from incidentbot.runbooks.actions.web3._beacon import BeaconApi
from incidentbot.runbooks.actions.web3._interchange import PUBKEY, parse, sha256_of, short
from incidentbot.runbooks.actions.web3._sentences import count, items, text
from incidentbot.runbooks.actions.web3._util import HttpUrlText, Timeout
from incidentbot.runbooks.actions.web3.validator_clients import Indices
from incidentbot.runbooks.egress import policy_of

KEYSTORES = "/eth/v1/keystores"


def _absolute(value: str, what: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"{what} must be an absolute path")
    return value


class _KeymanagerInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrlText
    token_file: str
    timeout: Timeout = 30.0

    @field_validator("token_file")
    @classmethod
    def _token(cls, value: str) -> str:
        return _absolute(value, "token_file")


def _call(
    ctx: ActionContext, action: str, inputs: _KeymanagerInputs, method: str, body: Any = None
) -> dict[str, Any]:
    """One keymanager request; its JSON body. Nothing answered: retryable (for a delete the
    caller decides); a refusal: permanent, never echoing the token."""
    try:
        token = Path(inputs.token_file).read_text().strip()
    except OSError as exc:
        raise PermanentError(
            shown(ctx, f"cannot read the keymanager token file {inputs.token_file}: {exc.strerror}")
        ) from None
    if not token or "\n" in token:
        raise PermanentError(shown(ctx, f"{inputs.token_file} holds no single bearer token"))
    url = inputs.url.rstrip("/") + KEYSTORES
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        with egress_client(ctx, action, timeout=inputs.timeout, headers=headers) as http:
            response = http.request(method, url, json=body)
    except httpx.HTTPError as exc:
        failure = classify(exc)
        message = shown(ctx, f"{method} {masked_url(url)}: {failure.message}").replace(token, "…")
        if failure.kind == "permanent":
            raise PermanentError(message) from None
        raise RetryableError(message) from None
    if response.status_code in (401, 403):
        raise PermanentError(
            shown(
                ctx,
                f"{masked_url(url)} refused the token in {inputs.token_file} "
                f"(HTTP {response.status_code})",
            )
        )
    if response.status_code != 200:
        raise PermanentError(
            shown(ctx, f"{method} {masked_url(url)} answered HTTP {response.status_code}")
        )
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PermanentError(shown(ctx, f"{method} {masked_url(url)}: not a JSON object"))
    return data


class ListInputs(_KeymanagerInputs):
    pass


class ValidatorKeysList(Action):
    name = "validator.keys_list"
    description = "List the public keys a validator client signs with (keymanager API)."
    idempotent = True
    Inputs = ListInputs
    outputs: ClassVar[dict[str, str]] = {
        "keys": "how many keys it signs with",
        "pubkeys": "their public keys, shortened",
        "readonly": "the shortened keys it cannot delete (remote signers)",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        keys = count(outputs.get("keys"))
        return (
            f"The client signs with {plural(keys, 'key')}"
            if keys is not None
            else ("The client's keys were listed")
        )

    def plan(self, inputs: ListInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_url(self.name, inputs.url)
        return shown(
            ctx,
            f"list the keys at {inputs.url}{KEYSTORES} (token from {inputs.token_file})",
        )

    def run(self, inputs: ListInputs, ctx: ActionContext) -> dict[str, Any]:
        rows = _call(ctx, self.name, inputs, "GET").get("data")
        keys = [r for r in rows or [] if isinstance(r, dict)]
        pubkeys = [str(r.get("validating_pubkey") or r.get("validatingPubkey") or "") for r in keys]
        return {
            "keys": len(pubkeys),
            "pubkeys": [short(k) for k in pubkeys],
            "readonly": [short(k) for k, r in zip(pubkeys, keys, strict=True) if r.get("readonly")],
        }


class DeleteInputs(_KeymanagerInputs):
    # The key set (validator indices): their public keys are asked of the beacon node.
    indices: Indices
    beacon_url: HttpUrlText
    file: str  # where the returned history is written

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        return _absolute(value, "file")


class ValidatorKeysDelete(Action):
    name = "validator.keys_delete"
    description = (
        "Delete a key set from a validator client (keymanager API): it stops signing with "
        "them and returns their slashing-protection history, written to a file."
    )
    idempotent = True  # a second delete returns the same history (keys not_active)
    Inputs = DeleteInputs
    outputs: ClassVar[dict[str, str]] = {
        "file": "the EIP-3076 history the client returned",
        "sha256": "its SHA-256",
        "keys": "how many keys of the set it holds",
        "statuses": "per key (shortened): deleted, not_active, not_found or error",
        "marks": "per key (shortened): highest block slot, attestation source and target epoch",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        rows = [r for r in items(outputs.get("statuses")) if isinstance(r, dict)]
        deleted = sum(1 for r in rows if r.get("status") in ("deleted", "not_active"))
        said = f"{plural(deleted, 'key')} deleted at the client" if rows else "Keys deleted"
        keys = count(outputs.get("keys"))
        name = Path(text(outputs.get("file"), "a file")).name or "a file"
        return said + (f"; history of {plural(keys, 'key')} in {name}" if keys is not None else "")

    def plan(self, inputs: DeleteInputs, ctx: ActionContext) -> str:
        policy = policy_of(ctx.services)
        policy.check_url(self.name, inputs.url)
        policy.check_url(self.name, inputs.beacon_url)
        return shown(
            ctx,
            f"delete validators {', '.join(map(str, inputs.indices))} (public keys from "
            f"{inputs.beacon_url}) at {inputs.url}{KEYSTORES}: the client stops signing with "
            f"them; write the slashing-protection history it returns to {inputs.file}",
        )

    def run(self, inputs: DeleteInputs, ctx: ActionContext) -> dict[str, Any]:
        with BeaconApi(ctx, self.name, inputs.beacon_url, inputs.timeout) as beacon:
            rows = beacon.get(
                "/eth/v1/beacon/states/head/validators", id=[str(i) for i in inputs.indices]
            )
        by_index = {
            int(r["index"]): str(r["validator"]["pubkey"]).lower()
            for r in rows or []
            if isinstance(r, dict) and isinstance(r.get("validator"), dict)
        }
        unknown = sorted(set(inputs.indices) - set(by_index))
        if unknown:
            raise PermanentError(
                shown(ctx, f"the beacon node knows no validator {', '.join(map(str, unknown))}")
            )
        pubkeys = [by_index[i] for i in inputs.indices]
        assert all(PUBKEY.match(k) for k in pubkeys)
        answer = _call(ctx, self.name, inputs, "DELETE", {"pubkeys": pubkeys})
        statuses = [r if isinstance(r, dict) else {} for r in answer.get("data") or []]
        raw = answer.get("slashing_protection", answer.get("slashingProtection"))
        if isinstance(raw, dict):
            raw = json.dumps(raw)
        if len(statuses) != len(pubkeys) or not isinstance(raw, str):
            raise PermanentError(
                shown(ctx, "the keymanager's answer has no status per key or no history")
            )
        found = parse(raw, f"the history {masked_url(inputs.url)} returned")
        path = Path(inputs.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(found.raw, indent=2) + "\n")
        os.replace(tmp, path)
        out_statuses = [
            {"pubkey": short(k), "status": str(s.get("status") or "unknown")}
            for k, s in zip(pubkeys, statuses, strict=True)
        ]
        failed = [s for s in out_statuses if s["status"] not in ("deleted", "not_active")]
        if failed:
            raise PermanentError(
                shown(
                    ctx,
                    "the client did not delete "
                    + ", ".join(f"{s['pubkey']} ({s['status']})" for s in failed)
                    + f"; the history it returned is in {path}",
                )
            )
        return {
            "file": str(path),
            "sha256": sha256_of(path),
            "keys": len([k for k in pubkeys if k in found.keys]),
            "statuses": out_statuses,
            "marks": [
                {**found.keys[k].as_dict(), "pubkey": short(k)} for k in pubkeys if k in found.keys
            ],
        }
