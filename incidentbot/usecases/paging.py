"""PagerDuty as a source: an incident triggered in PagerDuty declares one of ours, and an
existing PagerDuty incident can be linked to ours.

Both link the PagerDuty incident as a page of our incident (:mod:`incidentbot.paging.links`):
it shows in the header, is resolved with our incident, and its acknowledgement and resolution
come back through the webhook like those of the pages we open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from incidentbot import db
from incidentbot.errors import DomainError
from incidentbot.incidents import effects
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.paging import links
from incidentbot.ports import ExternalError, PageInfo
from incidentbot.usecases import incidents
from incidentbot.usecases.core import Actor, Core

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Triggered:
    """What a PagerDuty ``incident.triggered`` did: ``ref`` is our incident (None: ignored)."""

    outcome: str
    ref: str | None = None
    declared: bool = False


@dataclass(frozen=True)
class PageLinked:
    ref: str
    number: int | None
    service: str
    status: str
    url: str | None
    # False: it was already linked to this incident.
    new: bool


def pagerduty_triggered(
    core: Core, actor: Actor, *, event_id: str | None, info: PageInfo, title: str
) -> Triggered:
    """Attach a PagerDuty incident triggered on a service set to ``attach`` to the open
    incident paging that service, or declare one for it on a service set to ``declare``.

    Idempotent under redelivery: the PagerDuty incident is linked once (its id keys the page and
    the declare: one incident per PagerDuty incident, however many deliveries, concurrent or
    not) and the event id keys the timeline entry."""
    for attempt in (1, 2):
        try:
            return _triggered(core, actor, event_id=event_id, info=info, title=title)
        except IntegrityError:
            # A concurrent delivery of the same PagerDuty incident linked it first: the second
            # attempt finds it linked.
            if attempt == 2:
                raise
            log.info("PagerDuty %s linked concurrently; reading it back", info.id)
    raise AssertionError("unreachable")


def _triggered(
    core: Core, actor: Actor, *, event_id: str | None, info: PageInfo, title: str
) -> Triggered:
    settings = core.settings
    source = f"pagerduty:{event_id}" if event_id else None
    with db.read(core.engine) as s:
        page = links.own_page(s, info.key) or links.linked_page(s, info.id)
        if page is not None:
            inc = s.get(Incident, page.incident_id)
            assert inc is not None
            return Triggered(f"already linked to {inc.ref}", inc.ref)
    name = links.service_name(settings, info.service_id)
    if name is None:
        return Triggered("service not configured: ignored")
    cfg = settings.pagerduty.services[name]
    if cfg.attach:
        with db.transaction(core.engine) as s:
            found = links.open_incident_paging(s, name)
            if found is not None:
                how = f"(triggered on {name}, which it pages)"
                links.link_page(
                    s, settings, found, info, actor=actor.id, how=how, source_key=source
                )
                if core.chat:
                    effects.refresh(s, found, actor=actor.id, reason="page", digest=False)
                return Triggered(f"attached to {found.ref}", found.ref)
    if not cfg.declare:
        return Triggered(f"service {name} does not declare: ignored")
    out = incidents.declare(
        core,
        actor,
        title=title or f"PagerDuty #{info.number}",
        severity=cfg.declare_severity,
        description=f"Triggered in PagerDuty: #{info.number} {info.url or ''}".strip(),
        service=name,
        key=f"pagerduty:{info.id}",
        linked=info,
        linked_source=source,
    )
    return Triggered(f"declared {out.ref}", out.ref, declared=True)


def link(core: Core, actor: Actor, ref: str, target: str) -> PageLinked:
    """Link an existing PagerDuty incident (URL, number or id) to incident ``ref``."""
    wanted = links.parse_target(target)
    if core.pager is None or not core.settings.pagerduty.enabled:
        raise DomainError("PagerDuty is not configured: add services under `pagerduty:`")
    with db.read(core.engine) as s:
        svc.get(s, ref)  # an unknown incident is refused before asking PagerDuty
    try:
        info = core.pager.get(wanted)
    except ExternalError as exc:
        if exc.code == "http_404":
            raise DomainError(f"PagerDuty has no incident {target.strip()[:80]!r}") from None
        raise DomainError(f"PagerDuty could not be asked about {wanted}: {exc}") from None
    with db.transaction(core.engine) as s:
        inc = svc.get(s, ref)
        page, new = links.link_page(s, core.settings, inc, info, actor=actor.id, how="by hand")
        if new and core.chat:
            effects.refresh(s, inc, actor=actor.id, reason="page", digest=False)
        return PageLinked(inc.ref, page.number, page.service, page.status, page.url, new)
