"""``validator.protection_export``, ``validator.protection_import``,
``validator.protection_verify``: move a validator client's slashing-protection history
(EIP-3076 interchange) to the client that takes its keys over, and prove it arrived.

- export reads the source client's database offline (the client must be stopped: a running
  one holds the database, and would go on signing after the export);
- import writes the file into the target client's database (the target must be stopped, and
  its beacon node reachable: the CLI checks the chain's genesis validators root);
- verify exports the target's history again and checks, key by key, that its highest signed
  block slot and attestation source and target epochs are at least the source's. A key the
  target knows nothing about, or knows less about, fails the step: the target could sign
  something the source already signed.

The interchange holds public keys and signing roots, never private keys; outputs show keys
shortened. Lodestar 1.5 adds two entries that are database metadata, not keys: the export
drops them (``dropped``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, field_validator, model_validator

from incidentbot.infra.supervisor import SupervisorClient
from incidentbot.ledger.actions import PermanentError
from incidentbot.runbooks.actions._common import shown
from incidentbot.runbooks.actions.base import Action, ActionContext, plural
from incidentbot.runbooks.actions.web3._beacon import BeaconApi
from incidentbot.runbooks.actions.web3._interchange import (
    Interchange,
    LodestarInputs,
    covers,
    parse,
    plan_check,
    run_cli,
    same_digest,
    sha256_of,
    short,
)
from incidentbot.runbooks.actions.web3._sentences import count, items, text
from incidentbot.runbooks.actions.web3._util import (
    HttpUrlText,
    program_name,
    supervisor_socket,
)
from incidentbot.runbooks.actions.web3.supervisor import STOPPED_STATES
from incidentbot.runbooks.actions.web3.validator_clients import Indices
from incidentbot.runbooks.egress import policy_of


def _file(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError("file must be an absolute path")
    return value


AbsoluteFile = Annotated[str, AfterValidator(_file)]


class _Guarded(LodestarInputs):
    """The client whose database is read or written, under supervisord: it must be stopped
    (optional, but runbooks should give it)."""

    socket: str | None = None
    program: str | None = None

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str | None) -> str | None:
        return None if value is None else supervisor_socket(value)

    @field_validator("program")
    @classmethod
    def _program(cls, value: str | None) -> str | None:
        return None if value is None else program_name(value)


def _require_stopped(ctx: ActionContext, action: str, inputs: _Guarded, why: str) -> None:
    if not inputs.socket or not inputs.program:
        return
    policy_of(ctx.services).check_socket(action, inputs.socket, real=True)
    info = SupervisorClient(inputs.socket, timeout=10.0).state(inputs.program)
    if info.state not in STOPPED_STATES:
        raise PermanentError(
            shown(ctx, f"{inputs.program} is {info.state} (pid {info.pid}): {why}; stop it first")
        )


def _summary(found: Interchange) -> dict[str, Any]:
    return {
        "keys": len(found.keys),
        "genesis_validators_root": found.genesis_validators_root,
        "marks": [
            {**m.as_dict(), "pubkey": short(m.pubkey)}
            for m in sorted(found.keys.values(), key=lambda k: k.pubkey)
        ],
        "dropped": found.dropped,
    }


def export_to(
    ctx: ActionContext, action: str, inputs: LodestarInputs, path: Path, what: str
) -> Interchange:
    """Export ``inputs.data_dir``'s history to ``path`` (the real keys only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The CLI picks the format from the extension: it must be .json.
    raw = path.with_name(f".{path.stem}.raw.json")
    run_cli(ctx, action, inputs, ["export", "--file", str(raw)], what)
    try:
        found = parse(raw.read_text(), f"the export of {inputs.data_dir}")
    except OSError as exc:
        raise PermanentError(shown(ctx, f"{what}: the CLI wrote no file ({exc})")) from None
    finally:
        raw.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(found.raw, indent=2) + "\n")
    os.replace(tmp, path)
    return found


def _keys(outputs: dict[str, Any]) -> str:
    keys = count(outputs.get("keys"))
    return plural(keys, "key") if keys is not None else "its keys"


def _file(outputs: dict[str, Any]) -> str:
    return Path(text(outputs.get("file"), "the file")).name or "the file"


class ExportInputs(_Guarded):
    file: AbsoluteFile


class ValidatorProtectionExport(Action):
    name = "validator.protection_export"
    description = (
        "Export a stopped validator client's slashing-protection history (EIP-3076) to a file."
    )
    idempotent = True  # the same database gives the same file
    Inputs = ExportInputs
    outputs: ClassVar[dict[str, str]] = {
        "file": "the interchange written",
        "sha256": "its SHA-256",
        "keys": "how many keys it holds",
        "genesis_validators_root": "the chain it belongs to",
        "marks": "per key (shortened): highest block slot, attestation source and target epoch",
        "dropped": "entries that were not keys (database metadata) and were left out",
    }

    def plan(self, inputs: ExportInputs, ctx: ActionContext) -> str:
        plan_check(ctx, self.name, inputs)
        guard = f" (refused unless {inputs.program} is stopped)" if inputs.program else ""
        return shown(
            ctx,
            f"export the slashing-protection history in {inputs.data_dir} to {inputs.file} "
            f"with {inputs.lodestar}{guard}",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        said = f"Slashing protection of {_keys(outputs)} exported to {_file(outputs)}"
        dropped = len(items(outputs.get("dropped")))
        left_out = plural(dropped, "non-key entry", "non-key entries")
        return said + (f" ({left_out} left out)" if dropped else "")

    def run(self, inputs: ExportInputs, ctx: ActionContext) -> dict[str, Any]:
        _require_stopped(ctx, self.name, inputs, "a running client holds its database")
        path = Path(inputs.file)
        found = export_to(ctx, self.name, inputs, path, f"exporting {inputs.data_dir}")
        return {"file": str(path), "sha256": sha256_of(path), **_summary(found)}


class ImportInputs(_Guarded):
    file: AbsoluteFile
    beacon_url: HttpUrlText  # required: the CLI checks the chain there
    sha256: str | None = None


class ValidatorProtectionImport(Action):
    name = "validator.protection_import"
    description = (
        "Import an EIP-3076 interchange into a stopped validator client's slashing protection."
    )
    # Importing the same history twice leaves the same high-water marks.
    idempotent = True
    Inputs = ImportInputs
    # The interlock: it imports history at a client named by program and data directory
    # (which ties the target's program to the directory later steps verify); the history
    # travels in a file, so the step counts for any key set.
    imports_protection = True
    key_set_input = None
    client_input = ("program", "data_dir")
    outputs: ClassVar[dict[str, str]] = {
        "file": "the interchange imported",
        "keys": "how many keys it held",
        "marks": "per key (shortened): the marks imported",
    }

    def plan(self, inputs: ImportInputs, ctx: ActionContext) -> str:
        plan_check(ctx, self.name, inputs)
        digest = (inputs.sha256 or "").removeprefix("sha256:")
        check = f" (checked against sha256 {digest[:12]}…)" if digest else ""
        return shown(
            ctx,
            f"import {inputs.file}{check} into the slashing protection in {inputs.data_dir} "
            f"with {inputs.lodestar} (beacon node {inputs.beacon_url})",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        return f"Slashing protection of {_keys(outputs)} imported from {_file(outputs)}"

    def run(self, inputs: ImportInputs, ctx: ActionContext) -> dict[str, Any]:
        _require_stopped(ctx, self.name, inputs, "a running client holds its database")
        path = Path(inputs.file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise PermanentError(shown(ctx, f"cannot read {path}: {exc.strerror}")) from None
        if inputs.sha256 and not same_digest(path, inputs.sha256):
            raise PermanentError(
                shown(ctx, f"{path} is not the file exported (its SHA-256 differs)")
            )
        found = parse(text, str(path))
        # The CLI asks the beacon node for the genesis validators root: check the egress
        # policy here, as the CLI's own connection cannot be.
        with BeaconApi(ctx, self.name, inputs.beacon_url, 10.0) as api:
            genesis = api.get("/eth/v1/beacon/genesis")
        root = str(genesis.get("genesis_validators_root", "")).lower()
        if root != found.genesis_validators_root:
            raise PermanentError(
                shown(
                    ctx,
                    f"{path} is the history of another chain (genesis validators root "
                    f"{found.genesis_validators_root[:12]}…, the beacon node's {root[:12]}…)",
                )
            )
        run_cli(
            ctx,
            self.name,
            inputs,
            ["import", "--file", str(path)],
            f"importing into {inputs.data_dir}",
        )
        summary = _summary(found)
        return {"file": str(path), "keys": summary["keys"], "marks": summary["marks"]}


class VerifyInputs(LodestarInputs):
    file: AbsoluteFile  # the source's interchange
    # The key set moved (validator indices): every key of it must be in the source's export,
    # or the target would start some keys with no history at all (their public keys are
    # asked of the beacon node at ``beacon_url``).
    indices: Indices | None = None

    @model_validator(mode="after")
    def _beacon_for_indices(self) -> VerifyInputs:
        if self.indices is not None and self.beacon_url is None:
            raise ValueError("indices needs beacon_url (their public keys are asked there)")
        return self


def _key_set_pubkeys(ctx: ActionContext, action: str, inputs: VerifyInputs) -> dict[int, str]:
    """The public keys of ``inputs.indices``, by index, from the beacon node."""
    assert inputs.indices is not None and inputs.beacon_url is not None
    with BeaconApi(ctx, action, inputs.beacon_url, inputs.timeout) as api:
        found = api.get(
            "/eth/v1/beacon/states/head/validators", id=[str(i) for i in inputs.indices]
        )
    keys = {
        int(item["index"]): str(item["validator"]["pubkey"]).lower()
        for item in found or []
        if isinstance(item, dict) and isinstance(item.get("validator"), dict)
    }
    unknown = sorted(set(inputs.indices) - set(keys))
    if unknown:
        raise PermanentError(
            shown(ctx, f"the beacon node knows no validator {', '.join(map(str, unknown))}")
        )
    return keys


class ValidatorProtectionVerify(Action):
    """Export the target's history (to a temporary file) and compare it with the source's,
    key by key. Fails (permanently: a person must look) when any key of the source is
    missing at the target or has lower marks there."""

    name = "validator.protection_verify"
    description = (
        "Check that a validator client's slashing protection covers the history exported "
        "from another (every key, highest block slot and attestation epochs)."
    )
    idempotent = True
    Inputs = VerifyInputs
    # The interlock: it verifies the history of the client at ``data_dir`` (any key set).
    verifies_protection = True
    key_set_input = None
    client_input = "data_dir"
    outputs: ClassVar[dict[str, str]] = {
        "covered": "true: every key of the source is covered at the target",
        "keys": "how many keys the source holds",
        "checked": "per key (shortened): source and target marks",
    }

    def plan(self, inputs: VerifyInputs, ctx: ActionContext) -> str:
        plan_check(ctx, self.name, inputs)
        return shown(
            ctx,
            f"export the slashing-protection history in {inputs.data_dir} and check it covers "
            f"every key of {inputs.file} (highest block slot, source and target epochs)",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        if outputs.get("covered") is True:
            return f"The target covers the history of all {_keys(outputs)} of the source"
        gaps = [
            text(row.get("pubkey"))
            for row in items(outputs.get("checked"))
            if isinstance(row, dict) and row.get("covered") is False
        ]
        if gaps:
            return f"The target does not cover keys {', '.join(gaps[:5])}"
        return f"The target's cover of the source's {_keys(outputs)} is not known"

    def run(self, inputs: VerifyInputs, ctx: ActionContext) -> dict[str, Any]:
        try:
            source = parse(Path(inputs.file).read_text(), inputs.file)
        except OSError as exc:
            raise PermanentError(shown(ctx, f"cannot read {inputs.file}: {exc.strerror}")) from None
        _require_keys(ctx, self.name, inputs, source)
        with tempfile.TemporaryDirectory(prefix="incidentbot-verify-") as tmp:
            target = export_to(
                ctx, self.name, inputs, Path(tmp) / "target.json", f"exporting {inputs.data_dir}"
            )
        if source.keys and target.genesis_validators_root != source.genesis_validators_root:
            raise PermanentError(
                shown(ctx, f"{inputs.data_dir} holds the history of another chain")
            )
        checked, problems = [], []
        for pubkey, marks in sorted(source.keys.items()):
            have = target.keys.get(pubkey)
            gaps = covers(have, marks)
            checked.append(
                {
                    "pubkey": short(pubkey),
                    "source": marks.as_dict() | {"pubkey": short(pubkey)},
                    "target": (have.as_dict() | {"pubkey": short(pubkey)}) if have else None,
                    "covered": not gaps,
                }
            )
            if gaps:
                problems.append(f"{short(pubkey)}: {', '.join(gaps)}")
        if problems:
            raise PermanentError(
                shown(
                    ctx,
                    f"the slashing protection in {inputs.data_dir} does not cover the source's "
                    f"history ({'; '.join(problems)}): starting that client could double-sign",
                )
            )
        return {"covered": True, "keys": len(source.keys), "checked": checked}


def _require_keys(
    ctx: ActionContext, action: str, inputs: VerifyInputs, source: Interchange
) -> None:
    """An export with no key, or without a key of the key set, proves nothing: refuse it."""
    if not source.keys:
        raise PermanentError(
            shown(
                ctx,
                f"{inputs.file} holds no key: the source's history is missing (starting the "
                "target could double-sign)",
            )
        )
    if inputs.indices is None:
        return
    have = {k.lower() for k in source.keys}
    missing = [
        i for i, key in sorted(_key_set_pubkeys(ctx, action, inputs).items()) if key not in have
    ]
    if missing:
        raise PermanentError(
            shown(
                ctx,
                f"{inputs.file} lacks the history of validator {', '.join(map(str, missing))} "
                "of the key set: starting the target could double-sign",
            )
        )
