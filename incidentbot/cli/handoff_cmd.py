"""``incidentbot handoff preview <rotation>``: the handoff message as it would be posted now;
``incidentbot handoff note``: a watch note for the next handoff (as ``/incident handoff note``).

On-call comes from PagerDuty when its token is set; people are matched to Slack users (shown as
mentions) only when the Slack bot token is set too, else they show by name. Nothing is posted.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import typer

from incidentbot.cli.common import AS_OPTION, CliError, actor, state
from incidentbot.handoff import service as handoff
from incidentbot.pagerduty_adapter import pager_for
from incidentbot.ports import Chat
from incidentbot.usecases import handoff as uc
from incidentbot.usecases.core import Actor, Core

app = typer.Typer(
    help="The on-call handoff: preview it, leave a watch note.",
    no_args_is_help=True,
)


def _at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--at {text!r}: use an ISO time such as 2024-05-06T09:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def preview(
    ctx: typer.Context,
    rotation: str = typer.Argument(None, help="The rotation (default: the only one)."),
    at: str = typer.Option(None, "--at", help="Pretend it is this time (ISO 8601, default now)."),
) -> None:
    """Print the handoff message (Slack mrkdwn): the one due now, or the shift in progress."""
    st = state(ctx)
    settings = st.settings
    try:
        chosen = settings.handoff.rotation(rotation)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    chat: Chat | None = None
    if settings.slack_bot_token is not None:
        from incidentbot.slack.chat import SlackChat

        chat = SlackChat(
            settings.slack_bot_token.get_secret_value(), base_url=settings.slack.api_url
        )
    h = handoff.build(
        st.engine,
        settings,
        chosen,
        pager=pager_for(settings),
        chat=chat,
        now=_at(at),
        upcoming=at is None,
    )
    sys.stdout.write(handoff.render(h, settings.handoff.template_dir))


@app.command()
def note(
    ctx: typer.Context,
    text: list[str] = typer.Argument(..., help="What the next on-call should watch."),
    rotation: str = typer.Option(
        None, "--rotation", "-r", help="The rotation (default: the only one)."
    ),
    as_user: str = AS_OPTION,
) -> None:
    """Leave a watch note: the rotation's next handoff message carries it."""
    st = state(ctx)
    added = uc.add_note(
        Core(st.settings, st.engine), Actor(actor(as_user), "cli"), rotation, " ".join(text)
    )
    typer.echo(f"Noted for the next {added.rotation} handoff: {added.text}")
