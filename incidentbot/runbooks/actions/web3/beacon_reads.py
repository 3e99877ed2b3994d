"""Reads of a beacon node for validator runbooks and impact figures, through the standard
Beacon API (ethereum/beacon-APIs):

- ``beacon.head``: head slot and root, the slot by the chain's clock and how far the head is
  behind it, the justified and finalized checkpoints and the finality delay in epochs;
- ``beacon.liveness``: which of some validators were seen active (attesting or proposing)
  in an epoch (``POST /eth/v1/validator/liveness/{epoch}``, or the ``GET`` older clients
  answer). Nodes only know the current and the previous epoch;
- ``beacon.duties``: the validators' attester and proposer duties in an epoch;
- ``beacon.performance``: for a finished epoch (the previous one by default), who attested
  (liveness), which proposals were due and which blocks made it into the chain.

Reads change nothing, so they are idempotent and a failed request is retryable.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from incidentbot.runbooks.actions._common import fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext, plural
from incidentbot.runbooks.actions.web3._beacon import BeaconApi, BeaconApiError, as_int, index_list
from incidentbot.runbooks.actions.web3._sentences import at, count, indices, items, slots
from incidentbot.runbooks.actions.web3._util import HttpUrlText, Timeout
from incidentbot.runbooks.actions.web3.beacon import endpoint
from incidentbot.runbooks.egress import policy_of

Indices = Annotated[list[int], BeforeValidator(index_list)]


class _Read(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrlText
    timeout: Timeout = 10.0


class HeadInputs(_Read):
    pass


class EpochInputs(_Read):
    indices: Indices
    # None: the previous epoch by the chain's clock (complete, and still known to the node);
    # for duties, the current one.
    epoch: int | None = Field(default=None, ge=0)


class _BeaconRead(Action):
    idempotent = True
    paths: ClassVar[tuple[str, ...]] = ()

    def plan(self, inputs: Any, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_url(self.name, inputs.url)
        which = getattr(inputs, "indices", None)
        about = f" for validators {', '.join(map(str, which))}" if which else ""
        epoch = getattr(inputs, "epoch", "missing")
        when = "" if epoch == "missing" else f" in epoch {epoch if epoch is not None else 'E-1'}"
        urls = ", ".join(endpoint(inputs.url, p) for p in self.paths)
        return shown(ctx, f"read {urls}{about}{when} (timeout {fmt_seconds(inputs.timeout)})")


class BeaconHead(_BeaconRead):
    name = "beacon.head"
    description = "A beacon node's head, how far it is behind the clock, and finality."
    Inputs = HeadInputs
    paths = ("/eth/v1/beacon/headers/head", "/eth/v1/beacon/states/head/finality_checkpoints")
    outputs: ClassVar[dict[str, str]] = {
        "head_slot": "the head block's slot",
        "head_root": "the head block's root",
        "clock_slot": "the current slot by the chain's clock (genesis time and slot length)",
        "lag_slots": "clock_slot - head_slot: slots the head is behind (missed or not synced)",
        "epoch": "the current epoch by the clock",
        "justified_epoch": "the current justified checkpoint's epoch",
        "finalized_epoch": "the finalized checkpoint's epoch",
        "finality_delay": "epoch - finalized_epoch (2 on a healthy chain)",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        head, lag = count(o.get("head_slot")), count(o.get("lag_slots"))
        said = f"Head at slot {head if head is not None else '?'}"
        if lag is not None:
            said += f", {plural(lag, 'slot')} behind the clock" if lag else ", on time"
        final, delay = count(o.get("finalized_epoch")), count(o.get("finality_delay"))
        if final is not None:
            said += f"; finalized epoch {final}"
            if delay is not None:
                said += f" ({plural(delay, 'epoch')} ago)"
        return said

    def run(self, inputs: HeadInputs, ctx: ActionContext) -> dict[str, Any]:
        with BeaconApi(ctx, self.name, inputs.url, inputs.timeout) as api:
            clock = api.clock()
            header = api.get("/eth/v1/beacon/headers/head")
            checkpoints = api.get("/eth/v1/beacon/states/head/finality_checkpoints")
        slot = clock.slot()
        head = as_int(header["header"]["message"]["slot"])
        finalized = as_int(checkpoints["finalized"]["epoch"])
        return {
            "head_slot": head,
            "head_root": header.get("root"),
            "clock_slot": slot,
            "lag_slots": max(0, slot - head),
            "epoch": clock.epoch_of(slot),
            "justified_epoch": as_int(checkpoints["current_justified"]["epoch"]),
            "finalized_epoch": finalized,
            "finality_delay": max(0, clock.epoch_of(slot) - finalized),
        }


def _epoch(api: BeaconApi, asked: int | None) -> int:
    current = api.clock().epoch()
    return asked if asked is not None else max(0, current - 1)


def _liveness(api: BeaconApi, asked: int | None, indices: list[int]) -> tuple[int, dict]:
    """Liveness in ``asked``, else in the previous epoch. The node answers only for its
    current and previous epoch, so when an epoch ended between reading the clock and asking
    (a busy node, a slow answer), the previous epoch is worked out again, once."""
    epoch = _epoch(api, asked)
    try:
        return epoch, api.liveness(epoch, indices)
    except BeaconApiError as exc:
        if asked is not None or exc.status not in (400, 500) or _epoch(api, None) == epoch:
            raise
    epoch = _epoch(api, None)
    return epoch, api.liveness(epoch, indices)


class BeaconLiveness(_BeaconRead):
    name = "beacon.liveness"
    description = "Which validators were seen active (attesting or proposing) in an epoch."
    Inputs = EpochInputs
    paths = ("/eth/v1/validator/liveness/{epoch}",)
    outputs: ClassVar[dict[str, str]] = {
        "epoch": "the epoch asked about",
        "live": "indices seen active in it",
        "not_live": "indices not seen",
        "all_live": "true when every index was seen",
        "endpoint": "the liveness endpoint the node answered (POST standard, or GET)",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        epoch = count(o.get("epoch"))
        when = f" in epoch {epoch}" if epoch is not None else ""
        live, missing = items(o.get("live")), items(o.get("not_live"))
        total = len(live) + len(missing)
        if not missing:
            every = f"Validator {live[0]}" if total == 1 else f"All {total} validators"
            return f"{every} seen live{when}"
        return f"{len(live)} of {total} validators seen live{when}; not live: {indices(missing)}"

    def run(self, inputs: EpochInputs, ctx: ActionContext) -> dict[str, Any]:
        with BeaconApi(ctx, self.name, inputs.url, inputs.timeout) as api:
            epoch, seen = _liveness(api, inputs.epoch, inputs.indices)
            used = api.liveness_endpoint
        live = [i for i in inputs.indices if seen.get(i)]
        return {
            "epoch": epoch,
            "live": live,
            "not_live": [i for i in inputs.indices if not seen.get(i)],
            "all_live": len(live) == len(inputs.indices),
            "endpoint": used,
        }


def _duties(api: BeaconApi, epoch: int, indices: list[int]) -> tuple[list[dict], list[dict]]:
    attester = api.data(
        "POST", f"/eth/v1/validator/duties/attester/{epoch}", body=[str(i) for i in indices]
    )
    proposer = api.get(f"/eth/v1/validator/duties/proposer/{epoch}")
    attesting = [
        {
            "index": as_int(d["validator_index"]),
            "slot": as_int(d["slot"]),
            "committee": as_int(d["committee_index"]),
        }
        for d in attester
    ]
    wanted = set(indices)
    proposing = [
        {"index": as_int(d["validator_index"]), "slot": as_int(d["slot"])}
        for d in proposer
        if as_int(d["validator_index"]) in wanted
    ]
    return attesting, proposing


class BeaconDuties(_BeaconRead):
    name = "beacon.duties"
    description = "Validators' attester and proposer duties in an epoch."
    Inputs = EpochInputs
    paths = (
        "/eth/v1/validator/duties/attester/{epoch}",
        "/eth/v1/validator/duties/proposer/{epoch}",
    )
    outputs: ClassVar[dict[str, str]] = {
        "epoch": "the epoch",
        "attester": "one row per validator: index, slot, committee",
        "proposer": "the proposals due: index, slot",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        epoch = count(o.get("epoch"))
        said = f"Epoch {epoch if epoch is not None else '?'}: "
        said += plural(len(items(o.get("attester"))), "attestation duty", "attestation duties")
        due = slots(o.get("proposer"))
        return said + (f"; {at('proposal due', due)}" if due else "; no proposal due")

    def run(self, inputs: EpochInputs, ctx: ActionContext) -> dict[str, Any]:
        with BeaconApi(ctx, self.name, inputs.url, inputs.timeout) as api:
            epoch = inputs.epoch if inputs.epoch is not None else api.clock().epoch()
            attesting, proposing = _duties(api, epoch, inputs.indices)
        return {"epoch": epoch, "attester": attesting, "proposer": proposing}


class BeaconPerformance(_BeaconRead):
    """Liveness stands for attestations: the API this client offers does not say whether an
    attestation was included on chain or how late (no rewards endpoint in Lodestar 1.5).
    Proposals: every slot of the epoch is read (``headers/{slot}``); a block whose proposer is
    one of the validators is a proposal made. A missed one is known only while the node still
    gives proposer duties for the epoch (many give them for the current epoch only): then each
    due slot without that proposer's block counts as missed, else ``missed_proposals`` is
    null."""

    name = "beacon.performance"
    description = "Attestations and proposals of validators in a finished epoch: made or missed."
    Inputs = EpochInputs
    paths = (
        "/eth/v1/validator/liveness/{epoch}",
        "/eth/v1/validator/duties/proposer/{epoch}",
        "/eth/v1/beacon/headers/{slot}",
    )
    outputs: ClassVar[dict[str, str]] = {
        "epoch": "the epoch",
        "attested": "indices seen active in it (liveness)",
        "missed_attestations": "indices not seen",
        "proposed": "blocks of the validators in the epoch: index, slot",
        "missed_proposals": "due slots without their block (null: the node no longer says who "
        "was due)",
        "source": "where the numbers come from (endpoints)",
    }

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        epoch = count(o.get("epoch"))
        attested, missed = items(o.get("attested")), items(o.get("missed_attestations"))
        said = f"Epoch {epoch if epoch is not None else '?'}: "
        said += f"{len(attested)} of {len(attested) + len(missed)} validators attested"
        if missed:
            said += f" (missed: {indices(missed)})"
        said += f"; {plural(len(items(o.get('proposed'))), 'block')} proposed"
        if isinstance(o.get("missed_proposals"), list):
            lost = slots(o["missed_proposals"])
            said += f", {at('missed', lost)}" if lost else ", none missed"
        else:
            said += ", missed proposals unknown"
        return said

    def run(self, inputs: EpochInputs, ctx: ActionContext) -> dict[str, Any]:
        wanted = set(inputs.indices)
        with BeaconApi(ctx, self.name, inputs.url, inputs.timeout) as api:
            clock = api.clock()
            epoch, seen = _liveness(api, inputs.epoch, inputs.indices)
            used = api.liveness_endpoint
            first = epoch * clock.slots_per_epoch
            proposed = []
            for slot in range(first, first + clock.slots_per_epoch):
                try:
                    header = api.get(f"/eth/v1/beacon/headers/{slot}")
                except BeaconApiError as exc:
                    if exc.status != 404:
                        raise
                    continue  # no block at that slot
                proposer = as_int(header["header"]["message"]["proposer_index"])
                if proposer in wanted and header.get("canonical", True):
                    proposed.append({"index": proposer, "slot": slot})
            missed: list[dict[str, int]] | None
            try:
                _, due = _duties(api, epoch, inputs.indices)
            except BeaconApiError:
                missed = None
            else:
                made = {(p["index"], p["slot"]) for p in proposed}
                missed = [d for d in due if (d["index"], d["slot"]) not in made]
        return {
            "epoch": epoch,
            "attested": [i for i in inputs.indices if seen.get(i)],
            "missed_attestations": [i for i in inputs.indices if not seen.get(i)],
            "proposed": proposed,
            "missed_proposals": missed,
            "source": {
                "attestations": f"{used} (seen active in the epoch)",
                "proposals": "headers/{slot} of every slot; duties/proposer for missed ones",
            },
        }
