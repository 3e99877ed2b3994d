"""``check.that`` (how a runbook refuses) and ``incident.page`` without paging configured."""

from __future__ import annotations

import pytest

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.ledger import PermanentError
from incidentbot.runbooks import planning, run_context
from incidentbot.runbooks.actions import ActionContext, Services, registry


def run(name: str, data: dict, ctx: ActionContext) -> dict:
    action = registry.get(name)
    assert action is not None
    return action.run(action.validate(data), ctx)


def plan(name: str, data: dict, ctx: ActionContext) -> str:
    action = registry.get(name)
    assert action is not None
    return action.plan(action.validate(data), ctx)


def test_check_that_passes_or_stops_the_run_with_its_message():
    ctx = ActionContext(run_id=1, step_id="guard", mask=lambda t: t.replace("s3cret", "***"))
    assert run("check.that", {"that": True, "otherwise": "never shown"}, ctx) == {"passed": True}
    with pytest.raises(PermanentError, match=r"^node-2 looks healthy \(lag 0\): \*\*\*$"):
        run("check.that", {"that": False, "otherwise": "node-2 looks healthy (lag 0): s3cret"}, ctx)
    assert plan("check.that", {"that": True, "otherwise": "x"}, ctx) == "check: passes"
    assert plan("check.that", {"that": False, "otherwise": "no backup"}, ctx) == (
        "check: would stop the run: no backup"
    )
    action = registry.get("check.that")
    with pytest.raises(ValueError, match="valid boolean"):
        action.validate({"that": "maybe", "otherwise": "x"})


def test_incident_page_without_paging_says_so_or_fails(engine):
    settings = Settings()
    with db.transaction(engine) as s:
        inc = svc.declare(s, settings, title="RPC down", severity="SEV1", actor="alice")
        info = run_context.incident_info(s, inc)
    ctx = ActionContext(
        run_id=1,
        step_id="page",
        incident=info,
        services=Services(engine=engine, settings=settings),
    )
    out = run(
        "incident.page", {"service": "rpc", "message": "left drained", "required": False}, ctx
    )
    assert out == {
        "paged": False,
        "service": "rpc",
        "new": False,
        "reason": "paging is not configured in this bot",
    }
    with pytest.raises(PermanentError, match="paging is not configured"):
        run("incident.page", {"service": "rpc"}, ctx)
    assert plan("incident.page", {"service": "rpc", "message": "m"}, ctx) == "page rpc: m"


ANNOUNCE = """
name: tell
target: "lb/{{ vars.lb.backend }}"
steps:
  - id: post
    uses: slack.post
    with: {text: hello}
  - id: note
    uses: incident.note
    with: {text: hello}
"""


def test_slack_steps_run_only_where_slack_is_and_targets_may_be_expressions():
    from incidentbot.runbooks.loader import load_text

    runbook = load_text(ANNOUNCE, "tell.yaml", registry)
    steps = planning.ledger_steps(runbook, announce=True, approval_timeout=60)
    assert [s["action"] for s in steps] == [
        "runbook.announce",
        "runbook.step.chat",  # a bare worker (no Slack) hands it back, never fails it
        "runbook.step",
    ]
    plan = planning.plan(runbook, {}, variables={"lb": {"backend": "rpc_nodes"}})
    assert plan.target == "lb/rpc_nodes"


def test_a_target_expression_is_checked_like_any_other():
    from incidentbot.runbooks.loader import RunbookError, load_text

    bad = ANNOUNCE.replace("{{ vars.lb.backend }}", "{{ parms.x }}")
    with pytest.raises(RunbookError) as caught:
        load_text(bad, "tell.yaml", registry)
    assert [str(p) for p in caught.value.problems] == [
        "tell.yaml:3: target: 'lb/{{ parms.x }}': unknown variable 'parms' "
        "(available: params, steps, incident, target, run, vars)"
    ]
