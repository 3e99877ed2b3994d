"""Paging on-call, the core: which pages an incident opens (``flows``), their rows
(``models``), the policy (``config``). It speaks to PagerDuty only through the ``Pager`` port;
the PagerDuty client lives in :mod:`incidentbot.pagerduty_adapter` and the webhook route in
:mod:`incidentbot.web.pagerduty_webhooks`."""
