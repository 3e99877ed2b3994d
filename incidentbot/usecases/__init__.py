"""The use cases: every operation a user can ask for, once, for every door.

A door (Slack commands, buttons and modals, the CLI, Alertmanager, PagerDuty webhooks, scheduled
jobs) parses what it received into typed arguments, calls one function here with an
:class:`~incidentbot.usecases.core.Actor`, and renders what comes back. The function validates,
changes state, writes the timeline and queues every durable effect (chat, paging, ...) in one
transaction, so the same operation has the same effects from every door.

Nothing here imports a door, an adapter or a vendor SDK; results carry data, never markup.
Refusals are :class:`~incidentbot.errors.DomainError` with a plain-text message.
"""
