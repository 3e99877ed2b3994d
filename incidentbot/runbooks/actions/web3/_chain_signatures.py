"""What the chain holds of a key set's signatures: per validator, the highest attestation
target epoch included in a block and the highest slot it proposed a block at, found by reading
blocks back from the head (``/eth/v2/beacon/blocks/{slot}``) and the epoch's committees
(``/eth/v1/beacon/states/{slot}/committees``, at the slot of the block that included the
attestation: a node keeps no state for an empty slot, and a state knows the shuffling of its
own epoch and the ones next to it only) that say whose bits an aggregate holds.

An attestation for epoch E is included at the latest one epoch after E, so once the scan has
found a key attesting for target T it can stop at the start of epoch T for that key; it stops
altogether when every key is settled that way, or after ``lookback`` epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from incidentbot.runbooks.actions.web3._beacon import BeaconApi, BeaconApiError, as_int


@dataclass
class Signed:
    """Per validator index: the highest target epoch attested and slot proposed on chain."""

    target: dict[int, int] = field(default_factory=dict)
    proposed: dict[int, int] = field(default_factory=dict)
    scanned_from: int = 0  # the lowest slot read
    scanned_to: int = 0  # the head slot
    # Why the scan stopped before it had settled every key (None: it did not): a node that
    # keeps no state old enough to give an epoch's committees (Lodestar 1.5 keeps none from
    # before the finalized epoch).
    stopped: str | None = None


class _NoCommittees(Exception):
    pass


def bits(hex_bits: str) -> list[bool]:
    """An SSZ bitlist (``0x``-hex, little-endian bits, a final delimiter bit) as booleans."""
    raw = bytes.fromhex(hex_bits.removeprefix("0x"))
    out = [bool(byte >> i & 1) for byte in raw for i in range(8)]
    while out and not out[-1]:
        out.pop()
    return out[:-1]  # without the delimiter


def scan(api: BeaconApi, indices: list[int], slots_per_epoch: int, lookback: int) -> Signed:
    wanted = set(indices)
    head = api.head_slot()
    lowest = max(0, head - lookback * slots_per_epoch)
    found = Signed(scanned_to=head, scanned_from=head)
    committees: dict[int, dict[tuple[int, int], list[int]]] = {}

    def committee(epoch: int, slot: int, index: int, at: int) -> list[int]:
        """The committee of ``epoch``, read from the state at ``at``: the slot of a block
        (so the node has a state there) in that epoch or the next, whose shuffling knows it."""
        if epoch not in committees:
            try:
                rows = api.get(f"/eth/v1/beacon/states/{at}/committees", epoch=str(epoch))
            except BeaconApiError:
                try:
                    rows = api.get("/eth/v1/beacon/states/head/committees", epoch=str(epoch))
                except BeaconApiError as exc:
                    raise _NoCommittees(f"no committees of epoch {epoch}: {exc}") from None
            committees[epoch] = {
                (as_int(r["slot"]), as_int(r["index"])): [as_int(v) for v in r["validators"]]
                for r in rows or []
            }
        return committees[epoch].get((slot, index), [])

    def read(message: Any, slot: int) -> None:
        proposer = as_int(message["proposer_index"])
        if proposer in wanted and slot > found.proposed.get(proposer, -1):
            found.proposed[proposer] = slot
        for att in message["body"].get("attestations") or []:
            data = att["data"]
            att_slot, index = as_int(data["slot"]), as_int(data["index"])
            target = as_int(data["target"]["epoch"])
            members = committee(att_slot // slots_per_epoch, att_slot, index, slot)
            for member, voted in zip(members, bits(att["aggregation_bits"]), strict=False):
                if voted and member in wanted and target > found.target.get(member, -1):
                    found.target[member] = target

    def settled(slot: int) -> bool:
        return all(k in found.target and slot < found.target[k] * slots_per_epoch for k in wanted)

    for slot in range(head, lowest - 1, -1):
        if settled(slot):
            break
        try:
            block: Any = api.get(f"/eth/v2/beacon/blocks/{slot}")
        except BeaconApiError as exc:
            if exc.status != 404:
                raise
            found.scanned_from = slot  # no block at that slot
            continue
        try:
            read(block["message"], slot)
        except _NoCommittees as exc:
            found.stopped = str(exc)
            break
        found.scanned_from = slot
    return found
