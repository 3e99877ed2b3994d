"""Sampling chain impact into open incidents' timelines.

An open incident whose ``validators`` field (``impact.validators_field``) lists validator indices
(``4-7,12``) gets one ``impact.sample`` timeline entry per epoch, read from the beacon node after
the epoch ended: which of its validators were not live (missed attestations), which of their
proposals have no block, how far the node's head lags and how far finality is behind. The
entries stay on the timeline (never posted to Slack one by one) and the postmortem adds them up.

An entry's ``source_key`` names the incident and epoch, so a job that runs again for the same
epoch (another replica, a retry, a cadence shorter than an epoch) records nothing new.

Proposer duties: some beacon nodes give them only for the current and the next epoch (Lodestar
1.5), not for the epoch just ended. Each run therefore keeps the current epoch's duties (in
this process), and a sample uses them once that epoch has ended; when neither the node nor the
kept duties know an epoch's proposers, its sample says proposals are unknown (never zero).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.impact.beacon_reads import BeaconError, BeaconReader, source_name
from incidentbot.incidents import records
from incidentbot.incidents.models import Incident

log = logging.getLogger(__name__)

KIND = "impact.sample"
ACTOR = "incidentbot"
MAX_VALIDATORS = 10_000
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
# Beacon URL -> epoch -> its proposer duties, for the few latest epochs seen.
_DUTIES: dict[str, dict[int, list[tuple[int, int]]]] = {}
_DUTIES_KEPT = 8


def _duties(reader: BeaconReader, epoch: int) -> list[tuple[int, int]] | None:
    """The proposer duties of ``epoch``: from the node, else as kept from an earlier run
    (None: not known)."""
    kept = _DUTIES[reader.url] = _DUTIES.pop(reader.url, {})  # the latest used comes last
    try:
        duties = reader.proposer_duties(epoch)
    except BeaconError:
        return kept.get(epoch)
    kept[epoch] = duties
    for old in sorted(kept)[:-_DUTIES_KEPT]:
        del kept[old]
    while len(_DUTIES) > 16:  # a node named differently over time: forget the oldest
        del _DUTIES[next(iter(_DUTIES))]
    return duties


def parse_indices(text: str) -> list[int]:
    """``"4-7, 12"`` → ``[4, 5, 6, 7, 12]``; DomainError saying what is wrong otherwise."""
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        match = _RANGE.match(part)
        if not match:
            raise DomainError(
                f"{part!r} is not a validator index or range: write e.g. 4-7,12 (indices, "
                "not public keys)"
            )
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise DomainError(f"{part!r}: a range goes from low to high")
        if len(out) + high - low + 1 > MAX_VALIDATORS:
            raise DomainError(f"more than {MAX_VALIDATORS} validators: split the incident")
        out.update(range(low, high + 1))
    return sorted(out)


def sample(
    engine: Engine, settings: Settings, now: datetime, reader: BeaconReader | None = None
) -> int:
    """Record one sample per open incident that lists validators and has none for the last
    complete epoch yet; returns how many were recorded."""
    cfg = settings.impact
    if cfg.beacon_url is None and reader is None:
        return 0
    field = cfg.validators_field
    with db.transaction(engine) as s:
        wanted = [
            (i.id, i.ref, i.fields[field])
            for i in records.list_incidents(s, settings)
            if str(i.fields.get(field) or "").strip()
        ]
    if not wanted:
        return 0
    own = reader is None
    url = cfg.beacon_url.get_secret_value() if cfg.beacon_url is not None else ""
    reader = reader or BeaconReader(url, timeout=cfg.timeout)
    try:
        per_epoch = reader.slots_per_epoch()
        head_slot, distance = reader.syncing()
        finalized = reader.finalized_epoch()
        current = head_slot // per_epoch
        epoch = current - 1
        _duties(reader, current)  # kept for the sample of this epoch, once it has ended
        if epoch < 0:
            return 0
        duties = _duties(reader, epoch)
        recorded = 0
        for incident_id, ref, text in wanted:
            key = f"impact:{incident_id}:{epoch}"
            with db.transaction(engine) as s:
                if records.has_event(s, key):
                    continue
            try:
                indices = parse_indices(str(text))
            except DomainError as exc:
                log.warning("impact: %s field %s: %s", ref, field, exc)
                continue
            live = reader.liveness(epoch, indices)
            wanted = set(indices)
            slots = None if duties is None else sorted(s for s, i in duties if i in wanted)
            missed_slots = None if slots is None else [s for s in slots if not reader.has_block(s)]
            missed = [i for i in indices if not live.get(i, False)]
            data = {
                "epoch": epoch,
                "current_epoch": current,
                "validators": len(indices),
                "missed_attestations": missed,
                "proposals": None if slots is None else len(slots),
                "missed_proposals": missed_slots,
                "head_slot": head_slot,
                "sync_distance": distance,
                "finalized_epoch": finalized,
                "source": source_name(reader.url),
            }
            with db.transaction(engine) as s:
                if records.has_event(s, key):
                    continue
                _record(s, incident_id, data, now, key)
            recorded += 1
        return recorded
    finally:
        if own:
            reader.close()


def _record(s: Session, incident_id: int, data: dict, now: datetime, key: str) -> None:
    incident = s.get(Incident, incident_id)
    assert incident is not None
    live = data["validators"] - len(data["missed_attestations"])
    missed = ", ".join(str(i) for i in data["missed_attestations"][:20])
    more = "…" if len(data["missed_attestations"]) > 20 else ""
    summary = (
        f"Chain impact, epoch {data['epoch']}: {live} of {data['validators']} validators live"
        + (f" (not live: {missed}{more})" if missed else "")
        + (
            f"; {len(data['missed_proposals'])} of {data['proposals']} proposals missed"
            if data["proposals"] is not None
            else "; proposals unknown (the node no longer gives this epoch's duties)"
        )
        + f"; head {data['sync_distance']} slots behind"
        + f"; finalized epoch {data['finalized_epoch']} ({data['source']})"
    )
    records.record(s, incident, KIND, ACTOR, summary, now=now, data=data, source_key=key)
