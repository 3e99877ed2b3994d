"""Block Kit for runbook runs: the one message per run (updated in place), plans, the params
form.

The run message carries a ``block_id`` naming the run, so the bot finds its own message after a
crash instead of posting a second one. Buttons carry the ledger run id as their value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from incidentbot.chat_text import mention, mrkdwn
from incidentbot.runbooks.definition import Runbook, format_seconds
from incidentbot.runbooks.view import RunView
from incidentbot.slack.blocks import _clip, _render

APPROVE = "runbook_approve"
REJECT = "runbook_reject"
CANCEL = "runbook_cancel"
RESUME = "runbook_resume"
SKIP = "runbook_skip"
ABORT = "runbook_abort"
BUTTONS = (APPROVE, REJECT, CANCEL, RESUME, SKIP, ABORT)
FORM_CALLBACK = "runbook_params"

STEP_EMOJI = {
    "waiting": ":white_circle:",
    "running": ":arrows_counterclockwise:",
    "retrying": ":repeat:",
    "done": ":white_check_mark:",
    "failed": ":x:",
    "skipped": ":fast_forward:",
    "unknown": ":warning:",
}
RUN_TITLE = {
    "pending": "queued",
    "running": "running",
    "awaiting_approval": "waiting for approval",
    "parked": "waiting",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "needs_attention": "needs attention",
}
RUN_EMOJI = {
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
    "needs_attention": ":warning:",
    "awaiting_approval": ":raised_hand:",
}


# The run's record names who acted as "cancelled by U…", "skipped by U…", "resumed by U…".
_USER_ID = re.compile(r"(?<=\bby )([UW][A-Z0-9]{8,})\b")


def _mentions(text: str) -> str:
    """Text from the run's record, escaped (it may quote params, output, errors), with the
    Slack user id of whoever acted (``skipped by U024BE7LH``) shown as a mention; any other
    id in it (a param, an error) stays text."""
    return _USER_ID.sub(lambda m: mention(m.group(1)), mrkdwn(text))


def block_id(run_id: int) -> str:
    return f"runbook-run-{run_id}"


def _elapsed(seconds: float | None) -> str:
    return "" if seconds is None else f" ({format_seconds(max(0, round(seconds)))})"


def _button(text: str, action_id: str, run_id: int, style: str | None = None, **kw: Any) -> Any:
    return ButtonElement(text=text, action_id=action_id, value=str(run_id), style=style, **kw)


def run_message(view: RunView, link: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    title = RUN_TITLE.get(view.status, view.status)
    emoji = RUN_EMOJI.get(view.status, ":gear:")
    head = f"{emoji} *Runbook `{view.runbook}`* · run {view.run_id} · *{title}*"
    head += _elapsed(view.elapsed)
    about = [f"Requested by {mention(view.requester)}"]
    if view.target:
        about.append(f"target `{mrkdwn(view.target)}`")
    if view.params:
        about.append(
            "params " + ", ".join(f"`{mrkdwn(k)}={mrkdwn(v)}`" for k, v in view.params.items())
        )
    lines = []
    for step in view.steps:
        if step.rollback and step.status in ("waiting", "skipped"):
            continue  # a rollback that was not needed
        mark = "↩ " if step.rollback else ""
        detail = f" — {_mentions(step.detail)}" if step.detail else ""
        lines.append(
            f"{STEP_EMOJI.get(step.status, '')} {mark}{mrkdwn(step.label)}: {step.status}"
            f"{_elapsed(step.elapsed)}{detail}"
        )
    blocks: list[Block] = [
        SectionBlock(block_id=block_id(view.run_id), text=MarkdownTextObject(text=_clip(head))),
        ContextBlock(elements=[MarkdownTextObject(text=_clip(" · ".join(about), 2000))]),
        SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines) or "(no steps)"))),
    ]
    notes = []
    if view.approval != "none":
        need = "two people" if view.approvals_needed == 2 else "the incident commander"
        decided = ", ".join(f"{d} by {mention(u)}" for u, d in view.approvals)
        notes.append(f"Approval by {need}" + (f": {decided}" if decided else ""))
    if view.deadline is not None:
        notes.append(
            f"expires <!date^{int(view.deadline.timestamp())}^{{time}}"
            f"|at {view.deadline:%H:%M} UTC>"
        )
    if view.error and view.status in ("failed", "cancelled", "needs_attention"):
        notes.append(_mentions(view.error))
    if view.status == "needs_attention":
        notes.append(
            f"{mention(view.commander) if view.commander else 'Commander'}: check the target, "
            "then *Resume* (run the step again), *Skip the step* (it happened) or *Abort*"
        )
    notes.append(
        f"output: <{link}|run {view.run_id}>"
        if link
        else f"output: `incidentbot runs show {view.run_id}`"
    )
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_clip(" · ".join(notes), 2000))]))
    buttons = _buttons(view)
    if buttons:
        blocks.append(ActionsBlock(block_id=f"runbook-actions-{view.run_id}", elements=buttons))
    text = f"Runbook {view.runbook} (run {view.run_id}): {title}"
    return text, _render(blocks)


def _buttons(view: RunView) -> list[Any]:
    rid = view.run_id
    if view.status == "awaiting_approval":
        return [
            _button("Approve", APPROVE, rid, "primary"),
            _button("Reject", REJECT, rid, "danger"),
            _button("Cancel", CANCEL, rid),
        ]
    if view.status == "needs_attention":
        return [
            _button("Resume (run the step again)", RESUME, rid, "primary"),
            _button("Skip the step", SKIP, rid),
            _button(
                "Abort",
                ABORT,
                rid,
                "danger",
                confirm=ConfirmObject(
                    title="Abort the run?",
                    text="The remaining steps will not run and the target is unlocked.",
                    confirm="Abort",
                    deny="Keep it",
                ),
            ),
        ]
    if not view.ended:
        return [_button("Cancel", CANCEL, rid, "danger")]
    return []


def plan_message(lines: list[str]) -> tuple[str, list[dict[str, Any]]]:
    text = mrkdwn("\n".join(lines))  # a plan quotes the params as typed
    return text, _render([SectionBlock(text=MarkdownTextObject(text=_clip("```" + text + "```")))])


def params_form(
    runbook: Runbook,
    channel_id: str,
    *,
    values: dict[str, str] | None = None,
    plan: Sequence[str] = (),
) -> dict[str, Any]:
    """The modal asking for a run's params, one input per param, typed by the param's type.
    ``values`` prefill it (a suggested run); ``plan`` shows what the run would do."""
    blocks: list[Any] = []
    if runbook.description:
        blocks.append(SectionBlock(text=mrkdwn(runbook.description)[:2900]))
    if plan:
        shown = _clip(mrkdwn("\n".join(plan)), 2800)  # a plan quotes the params as typed
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*Plan*\n```{shown}```")))
    for name, param in runbook.params.items():
        hint = param.description or name
        if param.secret:
            hint += " (secret: masked everywhere once submitted)"
        initial = (
            None if param.secret or param.default is None else param.format_value(param.default)
        )
        if values and name in values and not param.secret:
            initial = values[name]
        element: Any
        if param.type in ("enum", "bool"):
            choices = param.values if param.type == "enum" else ["true", "false"]
            options = [Option(value=v, text=v[:75]) for v in (choices or [])]
            chosen = next((o for o in options if o.value == initial), None)
            element = StaticSelectElement(action_id="value", options=options, initial_option=chosen)
        elif param.type == "int":
            element = NumberInputElement(
                action_id="value",
                is_decimal_allowed=False,
                initial_value=initial,
                min_value=str(param.min) if param.min is not None else None,
                max_value=str(param.max) if param.max is not None else None,
            )
        else:
            placeholder = "e.g. 30s, 5m, 1h" if param.type == "duration" else None
            element = PlainTextInputElement(
                action_id="value", initial_value=initial, placeholder=placeholder
            )
        blocks.append(
            InputBlock(
                block_id=f"param_{name}",
                label=name[:2000],
                hint=hint[:2000],
                optional=not param.required,
                element=element,
            )
        )
    view = View(
        type="modal",
        callback_id=FORM_CALLBACK,
        title=PlainTextObject(text="Run a runbook"),
        submit=PlainTextObject(text="Start"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps({"runbook": runbook.name, "channel": channel_id}),
        blocks=[SectionBlock(text=f"*{runbook.name}*"), *blocks],
    )
    view.validate_json()
    return view.to_dict()


def form_values(view: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(runbook, channel, params as typed) from a submitted params form."""
    meta = json.loads(view.get("private_metadata") or "{}")
    values = view.get("state", {}).get("values", {})
    params: dict[str, Any] = {}
    for block, content in values.items():
        if not block.startswith("param_"):
            continue
        element = content.get("value") or {}
        value = element.get("value")
        option = element.get("selected_option")
        if option:
            value = option.get("value")
        if value not in (None, ""):
            params[block.removeprefix("param_")] = value
    return str(meta.get("runbook", "")), str(meta.get("channel", "")), params
