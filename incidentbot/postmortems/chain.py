"""Impact in chain units, added up from the incident's ``impact.sample`` timeline entries.

Each figure says where it came from: how many samples, which epochs, which beacon node. An
incident without samples shows none of these rows (never a zero it did not measure).
"""

from __future__ import annotations

from collections.abc import Iterable

from incidentbot.incidents.models import TimelineEvent
from incidentbot.postmortems.contents import MetricRow

KIND = "impact.sample"  # written by incidentbot.impact.sampler


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return None


def chain_rows(events: Iterable[TimelineEvent]) -> list[MetricRow]:
    """Missed attestations and proposals, max slots behind, finality delay (empty without
    samples)."""
    samples = {}
    for ev in events:
        epoch = _int((ev.data or {}).get("epoch")) if ev.kind == KIND else None
        if epoch is not None:
            samples.setdefault(epoch, ev.data)  # one per epoch (the first recorded counts)
    if not samples:
        return []
    epochs = sorted(samples)
    sources = sorted({str(d.get("source") or "beacon node") for d in samples.values()})
    span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}–{epochs[-1]}"
    counted = len(epochs)
    gaps = epochs[-1] - epochs[0] + 1 - counted
    where = (
        f"{counted} sample{'s' if counted != 1 else ''}, {span}"
        + (f", {gaps} epoch{'s' if gaps != 1 else ''} not sampled" if gaps else "")
        + f"; {', '.join(sources)}"
    )
    data = [samples[e] for e in epochs]
    duties = sum(_int(d.get("validators")) or 0 for d in data)
    missed_att = sum(len(d.get("missed_attestations") or []) for d in data)
    # Samples that knew the epoch's proposer duties (a node may no longer give them).
    known = [d for d in data if _int(d.get("proposals")) is not None]
    proposals = sum(_int(d.get("proposals")) or 0 for d in known)
    missed_prop = sum(len(d.get("missed_proposals") or []) for d in known)
    behind = max(_int(d.get("sync_distance")) or 0 for d in data)
    delays = [
        max(0, c - f - 2)
        for d in data
        if (c := _int(d.get("current_epoch"))) is not None
        and (f := _int(d.get("finalized_epoch"))) is not None
    ]
    rows = [
        MetricRow(
            "Missed attestations",
            f"validators not live, from liveness: {where}",
            f"{missed_att} of {duties} validator-epochs",
            "ok",
        ),
        MetricRow(
            "Max slots behind",
            f"beacon node sync distance: {where}",
            f"{behind} slot{'s' if behind != 1 else ''}",
            "ok",
        ),
    ]
    if known:
        rest = len(data) - len(known)
        unknown = f" ({rest} without duties, not counted)" if rest else ""
        rows.insert(
            1,
            MetricRow(
                "Missed proposals",
                f"proposer duties without a block: {where}{unknown}",
                f"{missed_prop} of {proposals}",
                "ok",
            ),
        )
    if delays:
        worst = max(delays)
        rows.append(
            MetricRow(
                "Finality delay",
                f"epochs beyond the usual 2 between head and finalized: {where}",
                f"{worst} epoch{'s' if worst != 1 else ''}",
                "ok",
            )
        )
    return rows
