"""Slashing-protection interchange files (EIP-3076) and the validator client's CLI that
writes and reads them.

An interchange lists, per validator public key, the blocks and attestations the client
signed. What protects a key moved to another client is the high-water marks: the highest
block slot, attestation source epoch and target epoch it signed. A client refuses to sign at
or below them (surround and double votes), so a target whose history covers the source's marks
can never sign what the source already signed.

The CLI runs like ``shell.exec`` programs (the same sandbox: fixed environment, limits, the
program must be in ``runbooks.shell_allow``). Its output is never copied into outputs or
errors beyond its last line, masked.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.ledger.actions import PermanentError, RetryableError
from incidentbot.runbooks.actions import shell_sandbox
from incidentbot.runbooks.actions._common import fmt_seconds, shown
from incidentbot.runbooks.actions.base import ActionContext
from incidentbot.runbooks.actions.shell_exec import refusal, resolve, shell_limits, shell_path
from incidentbot.runbooks.actions.web3._util import HttpUrlText, Timeout
from incidentbot.runbooks.egress import policy_of

PUBKEY = re.compile(r"^0x[0-9a-fA-F]{96}$")
_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")
# A Node program reserves far more address space than it uses (V8 and WebAssembly cages):
# the CLI gets at least this much RLIMIT_AS whatever runbooks.shell_limits says.
NODE_ADDRESS_SPACE = 64 * 1024**3


class LodestarInputs(BaseModel):
    """How to run the validator client's CLI (Lodestar's ``validator slashing-protection``)."""

    model_config = ConfigDict(extra="forbid")

    lodestar: str = Field(description="the Lodestar CLI (must be in runbooks.shell_allow)")
    network: str = "mainnet"
    preset: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    data_dir: str
    # The beacon node the CLI asks for the chain's genesis validators root when the database
    # does not hold it yet (a client that never ran).
    beacon_url: HttpUrlText | None = None
    timeout: Timeout = 180.0

    @field_validator("network", "preset")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        if value is not None and not _WORD.match(value):
            raise ValueError(f"{value!r} is not a network or preset name")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not re.match(r"^[A-Z][A-Z0-9_]*$", key) or not _WORD.match(str(item)):
                raise ValueError(f"params: {key}={item!r} is not a chain parameter")
        return value

    @field_validator("data_dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        if not value.startswith("/") or "\0" in value:
            raise ValueError("data_dir must be an absolute path")
        return value


def common_args(inputs: LodestarInputs) -> list[str]:
    args = ["--network", inputs.network, "--dataDir", inputs.data_dir]
    if inputs.preset:
        args += ["--preset", inputs.preset]
    for key, value in inputs.params.items():
        args += [f"--params.{key}", str(value)]
    if inputs.beacon_url:
        args += ["--server", inputs.beacon_url]
    return args


def plan_check(ctx: ActionContext, action: str, inputs: LodestarInputs) -> None:
    """The CLI must be allowed, and the beacon node it would reach too (nothing is read)."""
    why = refusal(inputs.lodestar, ctx.services.settings)
    if why:
        raise PermanentError(why)
    if inputs.beacon_url:
        policy_of(ctx.services).check_url(action, inputs.beacon_url)


def run_cli(
    ctx: ActionContext, action: str, inputs: LodestarInputs, args: list[str], what: str
) -> str:
    """Run ``lodestar validator slashing-protection ARGS``; its stdout. A failure says the
    program's last error line (masked)."""
    plan_check(ctx, action, inputs)
    settings = ctx.services.settings
    executable = resolve(inputs.lodestar, settings)
    limits = shell_limits(settings)
    if limits.memory < NODE_ADDRESS_SPACE:
        limits = limits.model_copy(update={"memory": NODE_ADDRESS_SPACE})
    # argv[0] first, as the program sees it.
    argv = [inputs.lodestar, "validator", "slashing-protection", *args, *common_args(inputs)]
    finished = shell_sandbox.run(
        executable,
        argv,
        env={},
        shell_path=shell_path(settings),
        limits=limits,
        timeout=inputs.timeout,
        should_stop=ctx.should_stop,
    )
    if finished.start_error:
        raise PermanentError(
            shown(ctx, f"{what}: cannot start {executable}: {finished.start_error}")
        )
    if finished.ended_by == "timeout":
        raise RetryableError(
            shown(ctx, f"{what}: the CLI did not finish within {fmt_seconds(inputs.timeout)}")
        )
    if finished.ended_by:
        raise PermanentError(shown(ctx, f"{what}: the CLI was ended ({finished.ended_by})"))
    if finished.code != 0:
        last = _error_line(finished.stdout + "\n" + finished.stderr)
        hint = ""
        if "Database is not open" in last or "LOCK" in last:
            hint = " (is the validator client still running on that data directory?)"
        raise PermanentError(
            shown(ctx, f"{what}: the CLI exited with status {finished.code}: {last}{hint}")
        )
    return finished.stdout


def _error_line(text: str) -> str:
    """The line that says what went wrong (Lodestar prints ``✖ Error: ...``), without ANSI
    colours; else the last non-empty line."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("at ")]
    for line in reversed(lines):
        if "Error" in line:
            return line.lstrip("✖ ").strip()[:300]
    return lines[-1][:300] if lines else "no output"


@dataclass(frozen=True)
class KeyMarks:
    """One key's high-water marks in an interchange (None: it signed nothing of that kind)."""

    pubkey: str
    block_slot: int | None
    source_epoch: int | None
    target_epoch: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pubkey": self.pubkey,
            "max_block_slot": self.block_slot,
            "max_source_epoch": self.source_epoch,
            "max_target_epoch": self.target_epoch,
        }


@dataclass(frozen=True)
class Interchange:
    genesis_validators_root: str
    version: str
    keys: dict[str, KeyMarks]
    dropped: int  # entries whose "pubkey" is not a BLS public key (Lodestar 1.5 adds two)
    raw: dict[str, Any]


def _max(values: list[Any]) -> int | None:
    numbers = [int(v) for v in values if v is not None]
    return max(numbers) if numbers else None


def parse(text: str, where: str) -> Interchange:
    """Read an interchange (PermanentError when it is not one)."""
    try:
        data = json.loads(text)
        meta = data["metadata"]
        entries = data["data"]
        if not isinstance(entries, list):
            raise TypeError("data is not a list")
        keys: dict[str, KeyMarks] = {}
        kept, dropped = [], 0
        for entry in entries:
            pubkey = str(entry["pubkey"]).lower()
            if not PUBKEY.match(pubkey):
                dropped += 1
                continue
            blocks = entry.get("signed_blocks") or []
            attestations = entry.get("signed_attestations") or []
            keys[pubkey] = KeyMarks(
                pubkey=pubkey,
                block_slot=_max([b.get("slot") for b in blocks]),
                source_epoch=_max([a.get("source_epoch") for a in attestations]),
                target_epoch=_max([a.get("target_epoch") for a in attestations]),
            )
            kept.append(entry)
        return Interchange(
            genesis_validators_root=str(meta["genesis_validators_root"]).lower(),
            version=str(meta.get("interchange_format_version", "")),
            keys=keys,
            dropped=dropped,
            raw={"metadata": meta, "data": kept},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PermanentError(f"{where} is not an EIP-3076 interchange file ({exc})") from None


def sha256_of(path: Path) -> str:
    """``sha256:<hex>``: labelled, so that the masking of stored outputs (64 bare hex digits
    look like a private key) leaves it readable, and a later step can check it."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def same_digest(path: Path, expected: str) -> bool:
    """Whether ``path`` has the SHA-256 ``expected`` (with or without ``sha256:``)."""
    return sha256_of(path) == "sha256:" + expected.lower().removeprefix("sha256:")


def short(pubkey: str) -> str:
    return f"{pubkey[:10]}…{pubkey[-6:]}"


def covers(target: KeyMarks | None, source: KeyMarks) -> list[str]:
    """What of ``source``'s marks ``target`` does not cover (empty: covered)."""
    if target is None:
        return ["no history at all"]
    gaps = []
    for field_name, label in (
        ("block_slot", "block slot"),
        ("source_epoch", "attestation source epoch"),
        ("target_epoch", "attestation target epoch"),
    ):
        want, have = getattr(source, field_name), getattr(target, field_name)
        if want is not None and (have is None or have < want):
            gaps.append(f"{label} {have if have is not None else 'none'} < {want}")
    return gaps
