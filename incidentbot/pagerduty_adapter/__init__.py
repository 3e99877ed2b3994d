"""The PagerDuty adapter: the ``Pager`` port on the official ``pagerduty`` client.

Only the doors and the bot's wiring import it; the paging core (:mod:`incidentbot.paging`) and
every other core package get a ``Pager`` passed in.
"""

from __future__ import annotations

from incidentbot.config import Settings
from incidentbot.pagerduty_adapter.client import PagerDutyPager
from incidentbot.ports import Pager

__all__ = ["PagerDutyPager", "pager_for"]


def pager_for(settings: Settings, pager: Pager | None = None) -> Pager | None:
    """The pager to ask who is on call: the bot's own, else a read-only one when the PagerDuty
    token is set (on-call lookups need no services configured for paging)."""
    if pager is not None or settings.pagerduty_api_token is None:
        return pager
    pd = settings.pagerduty
    return PagerDutyPager(
        settings.pagerduty_api_token.get_secret_value(),
        from_email=pd.from_email or "",
        base_url=pd.api_url,
        ca_file=pd.ca_file,
    )
