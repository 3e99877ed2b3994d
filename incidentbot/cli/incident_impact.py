"""After ``incidentbot incident resolve``: when the impact started, if nobody recorded it.

The same question the Slack resolve asks in a form: given with ``--impact-started``, asked at
the prompt on a terminal (Enter skips), or, when nobody is at a terminal, said with the command
that records it later. The answer is recorded as given at the resolve, so the postmortem's
metrics say where the time came from.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from incidentbot.cli.common import console
from incidentbot.errors import DomainError
from incidentbot.postmortems.impact_start import FORMS
from incidentbot.usecases import postmortems as pm_uc
from incidentbot.usecases.core import Actor, Core

TRIES = 3


def ask_impact_start(core: Core, actor: Actor, ref: str, given: str | None) -> None:
    """Record the impact's start of the resolved ``ref`` from ``given`` or the prompt."""
    question = pm_uc.impact_start_question(core, ref)
    if question is None:
        return
    if given is not None:
        _record(core, actor, ref, given)
        return
    if not sys.stdin.isatty():
        console.print(
            f"{ref}: when the impact started is not recorded; the postmortem measures time to "
            f"detect, mitigate and resolve from it. Record it with: incidentbot incident "
            f"milestone {ref} impact_started '20m ago'",
            markup=False,
            soft_wrap=True,
        )
        return
    same = [
        f"same as {name} ({when})"
        for name, when in (("detected", question.detected), ("declared", question.declared))
        if when
    ]
    console.print(
        f"{ref} is resolved. When did the impact start? Times are {question.timezone}"
        + (f"; or {' / '.join(same)}" if same else "")
        + ". Enter skips.",
        markup=False,
    )
    for _ in range(TRIES):
        text = typer.prompt("Impact started", default="", show_default=False)
        if not text.strip():
            break
        try:
            _record(core, actor, ref, text)
            return
        except DomainError as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
    console.print(f"{ref}: impact start not recorded ({FORMS}).", markup=False)


def _record(core: Core, actor: Actor, ref: str, text: str) -> None:
    done = pm_uc.give_impact_start(core, actor, ref, text)
    metrics = ", ".join(f"{label} {value}" for label, value in done.metrics if value)
    console.print(
        f"{done.ref}: impact started at {done.at:%Y-%m-%d %H:%M} UTC"
        + (f" ({metrics})" if metrics else ""),
        markup=False,
    )
