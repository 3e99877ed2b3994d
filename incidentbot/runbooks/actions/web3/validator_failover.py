"""``validator.prove_gone`` and ``validator.protection_check``: fail a key set over from a
validator client on a host that is gone (its process dead, its API unreachable), whose
slashing-protection history cannot be exported live.

Nothing can be stopped on a dead host, so the proof comes from elsewhere:

- ``validator.prove_gone`` checks that the source's API (its keymanager API, say) does not
  answer, and then watches the chain: the keys must be seen inactive (beacon API liveness) for
  ``epochs`` consecutive epochs. Epochs in which the keys are still seen active at the start
  of the watch (a host that died a moment ago) are recorded, up to ``max_live_epochs``; keys
  active after a quiet epoch, or for longer, mean something signs with them, and the run stops
  for a person. It then reads the blocks back from the head for the keys' attestations and
  proposals (:mod:`._chain_signatures`): per key, ``cover_epochs`` is the last epoch the chain
  saw it sign and ``cover_slots`` the last slot it proposed at. A key with no signature in the
  blocks read gets the epoch before them as a bound.
- ``validator.protection_check`` reads the history the target will get (a backup, or an
  export of the dead host's database) and checks that every key of the key set is in it, for
  this chain, reaching those epochs and slots. A history that does not (an old backup) cannot
  prove the target will not sign what the source signed: the run stops for a person, and
  nothing is made up to fill the gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.ledger.actions import NeedsAttentionError, PermanentError, RetryableError
from incidentbot.runbooks.actions._common import fmt_seconds, masked_url, shown
from incidentbot.runbooks.actions.base import Action, ActionContext, plural
from incidentbot.runbooks.actions.egress_http import client as egress_client
from incidentbot.runbooks.actions.web3._beacon import BeaconApi, BeaconApiError
from incidentbot.runbooks.actions.web3._chain_signatures import scan
from incidentbot.runbooks.actions.web3._interchange import parse, sha256_of, short
from incidentbot.runbooks.actions.web3._sentences import count, indices, items, text
from incidentbot.runbooks.actions.web3._util import (
    HttpUrlText,
    Timeout,
    program_name,
    wait_until,
)
from incidentbot.runbooks.actions.web3.validator_clients import Indices
from incidentbot.runbooks.egress import policy_of


class GoneInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client: str = Field(description="the source client's name (nothing is done to it)")
    beacon_url: HttpUrlText
    indices: Indices
    # The source's API (keymanager, metrics): it must not answer. Empty: not checked.
    api_url: HttpUrlText | None = None
    epochs: int = Field(default=2, ge=1, le=16)
    max_live_epochs: int = Field(default=2, ge=0, le=8)
    # How far back the chain's blocks are read for the keys' last attestations and proposals.
    lookback_epochs: int = Field(default=32, ge=1, le=1024)
    timeout: Timeout = 900.0

    @field_validator("client")
    @classmethod
    def _client(cls, value: str) -> str:
        return program_name(value)

    @field_validator("api_url", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return None if value == "" else value


def _api_unreachable(ctx: ActionContext, action: str, url: str) -> str:
    """Why the source's API does not answer; NeedsAttentionError when it does."""
    try:
        with egress_client(ctx, action, timeout=5.0) as http:
            response = http.get(url)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}"
    raise NeedsAttentionError(
        shown(
            ctx,
            f"the source's API at {masked_url(url)} answers (HTTP {response.status_code}): its "
            "host is not gone. Stop it where it runs instead (move-validator-keys), or make "
            "sure it is down, then resume",
        )
    )


class ValidatorProveGone(Action):
    name = "validator.prove_gone"
    description = (
        "Prove a validator client on a dead host no longer signs: its API unreachable and "
        "its keys not seen active for N consecutive epochs; says the last epoch the chain "
        "may have seen it sign."
    )
    idempotent = True  # reads only
    Inputs = GoneInputs
    proves_stopped = True  # the interlock: ``indices`` no longer signed at ``client``
    client_input = "client"
    outputs: ClassVar[dict[str, str]] = {
        "client": "the source client",
        "api": "how its API failed to answer (null: not checked)",
        "live_epochs": "epochs at the start of the watch in which its keys were still active",
        "epochs_checked": "the consecutive epochs in which none of its keys was active",
        "epochs_unchecked": "epochs the node could not answer for (the count started again)",
        "cover_epochs": "per key: the last epoch the chain saw it sign (liveness, or its "
        "attestations in blocks)",
        "cover_epoch": "the latest of those",
        "cover_slots": "per key: the highest slot it proposed a block at, as read back",
        "cover_seen": "the keys seen active in the watch",
        "cover_unknown": "keys with no signature in the blocks read (their epoch is a bound)",
        "scanned_slots": "the slots whose blocks were read (lowest, head)",
        "scan_stopped": "why the blocks could not be read further back (null: they could)",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        said = f"{text(o.get('client'), 'The source client')} is gone"
        checked = items(o.get("epochs_checked"))
        if checked:
            said += f": its keys not live for {plural(len(checked), 'epoch')} ({indices(checked)})"
        cover = count(o.get("cover_epoch"))
        if cover is not None:
            said += f"; its keys may have signed up to epoch {cover}"
        return said

    def plan(self, inputs: GoneInputs, ctx: ActionContext) -> str:
        policy = policy_of(ctx.services)
        policy.check_url(self.name, inputs.beacon_url)
        api = ""
        if inputs.api_url:
            policy.check_url(self.name, inputs.api_url)
            api = f"check that {inputs.client}'s API at {inputs.api_url} does not answer, then "
        return shown(
            ctx,
            f"{api}check on {inputs.beacon_url} that validators "
            f"{', '.join(map(str, inputs.indices))} are not seen active in {inputs.epochs} "
            f"consecutive epochs (up to {fmt_seconds(inputs.timeout)}; nothing is stopped or "
            f"started)",
        )

    def run(self, inputs: GoneInputs, ctx: ActionContext) -> dict[str, Any]:
        api = _api_unreachable(ctx, self.name, inputs.api_url) if inputs.api_url else None
        with BeaconApi(ctx, self.name, inputs.beacon_url, 10.0) as beacon:
            clock = beacon.clock()
            live: list[int] = []
            quiet: list[int] = []
            unchecked: list[int] = []
            last_seen: dict[int, int] = {}
            first = max(0, clock.epoch() - 1)  # the last complete epoch: the watch starts there
            state = {"next": first}

            def check() -> tuple[bool | None, str]:
                current = clock.epoch()
                epoch = state["next"]
                if current <= epoch:
                    return None, f"epoch {current}, waiting for epoch {epoch} to end"
                if current > epoch + 1:  # the node answers for the previous epoch only
                    unchecked.extend(range(epoch, current - 1))
                    quiet.clear()  # consecutive quiet epochs, or none
                    state["next"] = epoch = current - 1
                try:
                    seen = beacon.liveness(epoch, inputs.indices)
                except BeaconApiError as exc:
                    return None, f"liveness for epoch {epoch}: {exc}"
                active = sorted(i for i, yes in seen.items() if yes)
                state["next"] = epoch + 1
                if not active:
                    quiet.append(epoch)
                    return (True if len(quiet) >= inputs.epochs else None), f"quiet {quiet}"
                keys = ", ".join(map(str, active))
                if quiet or unchecked or len(live) >= inputs.max_live_epochs:
                    after = f"quiet epochs {indices(quiet)}" if quiet else "the watch began"
                    raise NeedsAttentionError(
                        shown(
                            ctx,
                            f"validators {keys} were active in epoch {epoch} (after {after}): "
                            f"{inputs.client} may not be gone, or another client signs with "
                            "these keys; find the signer before starting any other",
                        )
                    )
                live.append(epoch)
                last_seen.update(dict.fromkeys(active, epoch))
                return None, f"still active in epoch {epoch}"

            wait_until(
                ctx,
                check,
                timeout=inputs.timeout,
                what=f"{inputs.epochs} epochs without {inputs.client}'s keys",
                interval=1.0,
                on_timeout=RetryableError,  # a read: nothing happened
            )
            try:
                signed = scan(beacon, inputs.indices, clock.slots_per_epoch, inputs.lookback_epochs)
            except (BeaconApiError, KeyError, TypeError, ValueError) as exc:
                raise NeedsAttentionError(
                    shown(ctx, f"cannot read the keys' signatures from the chain's blocks: {exc}")
                ) from None
        # Per key: the latest of the epoch it was seen active and the highest target epoch of
        # its attestations in blocks; a key with neither since the scan's start may have
        # signed up to the epoch before it.
        oldest = max(0, signed.scanned_from // clock.slots_per_epoch - 1)
        covers, unknown = {}, []
        for i in inputs.indices:
            known = [e for e in (last_seen.get(i), signed.target.get(i)) if e is not None]
            covers[i] = max(known) if known else oldest
            if not known:
                unknown.append(i)
        return {
            "client": inputs.client,
            "api": api,
            "live_epochs": live,
            "epochs_checked": quiet,
            "epochs_unchecked": unchecked,
            "cover_epochs": covers,
            "cover_epoch": max(covers.values()),
            "cover_slots": signed.proposed,
            "cover_seen": sorted(last_seen),
            "cover_unknown": unknown,
            "scanned_slots": [signed.scanned_from, signed.scanned_to],
            "scan_stopped": signed.stopped,
        }


def _absolute(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError("file must be an absolute path")
    return value


class CheckInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    beacon_url: HttpUrlText
    indices: Indices
    # Per validator index, the epoch its history must reach (validator.prove_gone's
    # cover_epochs); an index not in it must reach ``cover_epoch``.
    cover_epochs: dict[int, int] = Field(default_factory=dict)
    cover_epoch: int = Field(ge=0)
    # Per validator index, the highest slot it proposed at on chain: the history's highest
    # block slot must reach it.
    cover_slots: dict[int, int] = Field(default_factory=dict)
    timeout: Timeout = 30.0

    @field_validator("cover_epochs")
    @classmethod
    def _epochs(cls, value: dict[int, int]) -> dict[int, int]:
        if any(i < 0 or e < 0 for i, e in value.items()):
            raise ValueError("cover_epochs: validator indices and epochs are not negative")
        return value

    def needs(self, index: int) -> int:
        return self.cover_epochs.get(index, self.cover_epoch)

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        return _absolute(value)


class ValidatorProtectionCheck(Action):
    name = "validator.protection_check"
    description = (
        "Check that a slashing-protection history (EIP-3076 file) holds every key of a key "
        "set, for this chain, up to the last epoch the chain may have seen them sign."
    )
    idempotent = True  # reads only
    Inputs = CheckInputs
    outputs: ClassVar[dict[str, str]] = {
        "file": "the history checked",
        "sha256": "its SHA-256 (the import checks it is the same file)",
        "keys": "how many keys of the key set it holds",
        "cover_epoch": "the latest epoch a key's history had to reach",
        "reached": "per key (shortened): its highest attestation target epoch and block slot, "
        "and the epoch it had to reach",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        keys = count(outputs.get("keys"))
        said = f"The history of {plural(keys, 'key') if keys is not None else 'the keys'}"
        epoch = count(outputs.get("cover_epoch"))
        reach = f" reaches epoch {epoch}" if epoch is not None else " was checked"
        return said + reach + f" ({Path(text(outputs.get('file'), 'the file')).name})"

    def plan(self, inputs: CheckInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_url(self.name, inputs.beacon_url)
        return shown(
            ctx,
            f"read {inputs.file} and check it holds validators "
            f"{', '.join(map(str, inputs.indices))} (public keys from {inputs.beacon_url}) with "
            f"attestations up to the last epoch each may have signed in (at most "
            f"{max([inputs.cover_epoch, *inputs.cover_epochs.values()])}); stop for a person "
            "if not",
        )

    def run(self, inputs: CheckInputs, ctx: ActionContext) -> dict[str, Any]:
        path = Path(inputs.file)
        try:
            raw = path.read_text()
        except OSError as exc:
            raise NeedsAttentionError(
                shown(ctx, f"cannot read {path}: {exc.strerror}; put the history there, resume")
            ) from None
        try:
            found = parse(raw, str(path))
        except PermanentError as exc:  # not an interchange
            raise NeedsAttentionError(shown(ctx, str(exc))) from None
        with BeaconApi(ctx, self.name, inputs.beacon_url, inputs.timeout) as beacon:
            root = str(beacon.get("/eth/v1/beacon/genesis").get("genesis_validators_root", ""))
            rows = beacon.get(
                "/eth/v1/beacon/states/head/validators", id=[str(i) for i in inputs.indices]
            )
        keys = {
            int(r["index"]): str(r["validator"]["pubkey"]).lower()
            for r in rows or []
            if isinstance(r, dict) and isinstance(r.get("validator"), dict)
        }
        if root.lower() != found.genesis_validators_root:
            raise NeedsAttentionError(
                shown(ctx, f"{path} is the history of another chain (genesis validators root)")
            )
        reached, problems = [], []
        for index in inputs.indices:
            pubkey = keys.get(index)
            marks = found.keys.get(pubkey) if pubkey else None
            target = marks.target_epoch if marks else None
            reached.append(
                {
                    "index": index,
                    "pubkey": short(pubkey) if pubkey else None,
                    "max_target_epoch": target,
                    "max_block_slot": marks.block_slot if marks else None,
                    "needed_epoch": inputs.needs(index),
                }
            )
            if pubkey is None:
                problems.append(f"validator {index}: unknown to the beacon node")
            elif marks is None:
                problems.append(f"validator {index}: no history at all")
            elif target is None or target < inputs.needs(index):
                problems.append(
                    f"validator {index}: attestations up to epoch "
                    f"{target if target is not None else 'none'}, not {inputs.needs(index)}"
                )
            elif index in inputs.cover_slots and (
                marks.block_slot is None or marks.block_slot < inputs.cover_slots[index]
            ):
                problems.append(
                    f"validator {index}: blocks up to slot {marks.block_slot}, not "
                    f"{inputs.cover_slots[index]}"
                )
        if problems:
            raise NeedsAttentionError(
                shown(
                    ctx,
                    f"{path} does not reach the last epochs the chain may have seen the source "
                    f"sign ({'; '.join(problems)}): the target could sign "
                    "what the source signed. Give a history that reaches it (an export of the "
                    "dead host's database), then run again; nothing is filled in automatically",
                )
            )
        return {
            "file": str(path),
            "sha256": sha256_of(path),
            "keys": len(reached),
            "cover_epoch": max(r["needed_epoch"] for r in reached),
            "reached": reached,
        }
