"""The postmortem's forms on the Bolt app: the section picker, a section's edit form, and
the resolve's question of when the impact started."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from slack_bolt import Ack, App

from incidentbot.errors import DomainError
from incidentbot.slack import postmortem_picker, resolve_impact
from incidentbot.slack.postmortem_commands import EDIT_CALLBACK, PostmortemCommands
from incidentbot.usecases.core import Core

log = logging.getLogger(__name__)
# form_submitted(submit, ack, body, view, what): answers with field errors, or closes the form
# and confirms to the submitter (incidentbot.slack.app).
FormSubmitted = Callable[[Any, Ack, dict[str, Any], dict[str, Any], str], None]


def register(
    app: App, core: Core, postmortems: PostmortemCommands | None, form_submitted: FormSubmitted
) -> None:
    @app.view(EDIT_CALLBACK)
    def on_edit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        if postmortems is None:
            ack()
            return
        form_submitted(postmortems.submit_edit, ack, body, view, "postmortem edit")

    @app.view(postmortem_picker.CALLBACK)
    def on_pick(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """The chosen section's edit form replaces the picker (or the picker says why not)."""
        if postmortems is None:
            ack()
            return
        ref, section, channel = postmortem_picker.chosen(view)
        try:
            _name, form = postmortems.edit_form(ref, section, channel)
        except DomainError as exc:
            message = str(exc)
            errors = {postmortem_picker.BLOCK: (message[:1].upper() + message[1:])[:150]}
            ack(response_action="errors", errors=errors)
            return
        ack(response_action="update", view=form)

    @app.view(resolve_impact.CALLBACK)
    def on_resolve_impact(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        form_submitted(partial(resolve_impact.submit, core), ack, body, view, "impact start")
