"""Runbook expressions: native values, conditions, dry-run placeholders, the sandbox, and the
references the loader checks."""

from __future__ import annotations

import pytest

from incidentbot.runbooks import expr, expr_refs, expr_syntax
from incidentbot.runbooks.expr import ExpressionError


@pytest.fixture
def ctx() -> dict:
    return {
        "params": {"node": "rpc-2", "force": False, "max_lag": 16, "settle": 30.0, "tags": ["a"]},
        "steps": {
            "check": {"outputs": {"lag": 3, "ok": True, "health": {"peers": 12}}, "status": "ok"}
        },
        "incident": {
            "ref": "INC-7",
            "title": "RPC p99 above 2s",
            "severity": "SEV2",
            "status": "investigating",
            "commander": "alice",
            "channel_id": "C0123",
            "fields": {"chain": "ethereum"},
        },
        "target": "rpc-2",
        "run": {"id": 41, "requester": "bob"},
    }


# render


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ params.max_lag }}", 16),
        ("  {{ params.max_lag }}\n", 16),
        ("{{ params.force }}", False),
        ("{{ params.settle }}", 30.0),
        ("{{ steps.check.outputs.health }}", {"peers": 12}),
        ("{{ params.tags + ['b'] }}", ["a", "b"]),
        ("{{ params.max_lag * 2 }}", 32),
        ("{{ incident.fields.chain }}", "ethereum"),
        ("{{ none }}", None),
    ],
)
def test_a_string_that_is_one_expression_keeps_its_type(ctx, template, expected):
    value = expr.render(template, ctx)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("http://{{ params.node }}:8545", "http://rpc-2:8545"),
        ("lag {{ steps.check.outputs.lag }} of {{ params.max_lag }}", "lag 3 of 16"),
        ("{{ params.max_lag }}{{ params.max_lag }}", "1616"),
        ("{{ incident.ref }}: {{ incident.title | upper }}", "INC-7: RPC P99 ABOVE 2S"),
        ("{% for t in params.tags %}[{{ t }}]{% endfor %}", "[a]"),
        ("run {{ run.id }} by {{ run.requester }} on {{ target }}", "run 41 by bob on rpc-2"),
        ("no template here", "no template here"),
    ],
)
def test_other_strings_render_to_text(ctx, template, expected):
    assert expr.render(template, ctx) == expected


def test_render_recurses_into_mappings_and_lists_and_leaves_other_values_alone(ctx):
    value = {
        "url": "http://{{ params.node }}:8545",
        "json": {"id": "{{ run.id }}", "params": ["{{ params.max_lag }}", 7, None, True]},
        "timeout": 5,
    }
    assert expr.render(value, ctx) == {
        "url": "http://rpc-2:8545",
        "json": {"id": 41, "params": [16, 7, None, True]},
        "timeout": 5,
    }


def test_an_undefined_param_names_the_expression_and_what_exists(ctx):
    with pytest.raises(ExpressionError) as info:
        expr.render("http://{{ params.nope }}/", ctx)
    assert str(info.value) == (
        "'http://{{ params.nope }}/': params.nope is undefined "
        "(params has: force, max_lag, node, settle, tags)"
    )


def test_an_undefined_value_inside_a_native_result_is_an_error_too(ctx):
    with pytest.raises(ExpressionError, match=r"steps\.check\.outputs\.nope is undefined"):
        expr.render("{{ [steps.check.outputs.nope] }}", ctx)


def test_an_unknown_variable_is_an_error(ctx):
    with pytest.raises(ExpressionError) as info:
        expr.render("{{ parms.node }}", ctx)
    assert "parms is undefined (variables: incident, params, run, steps, target)" in str(info.value)


def test_a_syntax_error_names_the_expression(ctx):
    with pytest.raises(ExpressionError) as info:
        expr.render("{{ params.node + }}", ctx)
    assert str(info.value).startswith("'{{ params.node + }}': syntax error: unexpected")


def test_an_error_while_evaluating_names_the_expression(ctx):
    with pytest.raises(ExpressionError) as info:
        expr.render("{{ params.max_lag / 0 }}", ctx)
    assert str(info.value) == "'{{ params.max_lag / 0 }}': cannot evaluate: division by zero"


# the sandbox


@pytest.mark.parametrize(
    ("template", "refused"),
    [
        ("{{ ''.__class__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "'__class__' of 'str' object"),
        ("x{{ params.__init__ }}", "access to attribute '__init__' of 'dict' object is unsafe"),
        ("{{ params.tags.append('x') }}", "access to attribute 'append' of 'list' object"),
        ("{{ params.update({'node': 'evil'}) }}", "'update' of 'dict' object is unsafe"),
    ],
)
def test_the_sandbox_refuses_internals_and_mutation(ctx, template, refused):
    with pytest.raises(ExpressionError) as info:
        expr.render(template, ctx)
    message = str(info.value)
    assert message.startswith(f"{template!r}: not allowed in a runbook expression: ")
    assert refused in message
    assert ctx["params"]["tags"] == ["a"] and ctx["params"]["node"] == "rpc-2"


def test_the_sandbox_refuses_internals_in_conditions_too(ctx):
    with pytest.raises(ExpressionError, match="not allowed in a runbook expression"):
        expr.condition("params.__class__", ctx)


# conditions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.force", False),
        ("{{ params.force }}", False),
        ("not params.force", True),
        ("{{ params.force or not steps.check.outputs.ok }}", False),
        ("steps.check.outputs.lag < params.max_lag", True),
        ("{{ incident.severity in ['SEV1', 'SEV2'] }}", True),
        ("'false'", False),  # text that reads false is false
        ("'no'", False),
        ("'yes'", True),
        ("''", False),
        ("0", False),
        ("steps.check.outputs.health", True),
        (True, True),
    ],
)
def test_conditions_with_or_without_braces(ctx, text, expected):
    assert expr.condition(text, ctx) is expected


def test_a_condition_must_be_one_expression(ctx):
    with pytest.raises(ExpressionError, match="a condition must be one expression"):
        expr.condition("{{ params.force }} and {{ params.force }}", ctx)
    with pytest.raises(ExpressionError, match="the condition is empty"):
        expr.condition("  ", ctx)


def test_an_undefined_name_in_a_condition_is_an_error(ctx):
    with pytest.raises(ExpressionError) as info:
        expr.condition("steps.check.outputs.missing", ctx)
    assert str(info.value) == (
        "'steps.check.outputs.missing': steps.check.outputs.missing is undefined "
        "(steps.check.outputs has: health, lag, ok)"
    )


# dry runs


@pytest.fixture
def plan_ctx(ctx) -> dict:
    """What a dry run knows: no step has run, and there is no run yet."""
    return {k: v for k, v in ctx.items() if k not in ("steps", "run")}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ steps.check.outputs.lag }}", "⟨steps.check.outputs.lag⟩"),
        ("{{steps.check.outputs['lag']}}", "⟨steps.check.outputs['lag']⟩"),
        ("{{ steps.check.outputs.lag + 1 }}", "⟨steps.check.outputs.lag + 1⟩"),
        ("{{ steps.check.outputs.lag | int }}", "⟨steps.check.outputs.lag | int⟩"),
        ("{{ steps.check.status == 'ok' }}", "⟨steps.check.status == 'ok'⟩"),
        (
            "lag {{ steps.check.outputs.lag }} on {{ params.node }}",
            "lag ⟨steps.check.outputs.lag⟩ on rpc-2",
        ),
        ("run {{ run.id }}", "run ⟨run.id⟩"),
        ("{{ params.max_lag }}", 16),
        ("http://{{ params.node }}:8545", "http://rpc-2:8545"),
    ],
)
def test_render_plan_shows_what_only_the_run_will_know_as_placeholders(
    plan_ctx, template, expected
):
    assert expr.render_plan(template, plan_ctx) == expected


def test_render_plan_recurses_and_still_reports_real_mistakes(plan_ctx):
    value = {"text": "{{ incident.ref }}: lag {{ steps.check.outputs.lag }}", "n": 3}
    assert expr.render_plan(value, plan_ctx) == {
        "text": "INC-7: lag ⟨steps.check.outputs.lag⟩",
        "n": 3,
    }
    with pytest.raises(ExpressionError, match=r"params\.nope is undefined"):
        expr.render_plan("{{ params.nope }} {{ steps.check.status }}", plan_ctx)


def test_render_plan_with_statements_that_need_a_step_output(plan_ctx):
    template = "{% if steps.check.outputs.ok %}healthy{% endif %}"
    assert expr.render_plan(template, plan_ctx) == f"⟨{template}⟩"
    known = "{% if params.force %}forced {% endif %}{{ steps.check.status }}"
    assert expr.render_plan(known, plan_ctx) == "⟨steps.check.status⟩"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.force", False),
        ("not params.force", True),
        ("not params.force or steps.check.outputs.ok", True),  # decided without the step
        ("params.force or steps.check.outputs.ok", None),  # decided at run time
        ("params.force and steps.check.outputs.ok", False),
        ("{{ steps.check.status == 'succeeded' }}", None),
        ("(steps.check.outputs.lag | string) == '3'", None),
        ("outputs.lag < params.max_lag", None),
        ("run.requester == 'bob'", None),
    ],
)
def test_condition_plan_is_none_when_the_run_decides(plan_ctx, text, expected):
    assert expr.condition_plan(text, plan_ctx) is expected


# references


@pytest.mark.parametrize(
    ("text", "condition", "expected"),
    [
        (
            "{{ steps.check.outputs['lag'] < params.max_lag }}",
            False,
            {("steps", "check", "outputs", "lag"), ("params", "max_lag")},
        ),
        (
            "http://{{ params.node }}:{{ params.port }}",
            False,
            {("params", "node"), ("params", "port")},
        ),
        ("{{ params[name] }}", False, {("params",), ("name",)}),
        ("{{ steps[params.first].status }}", False, {("steps",), ("params", "first")}),
        (
            "{% for n in params.nodes %}{{ n.id }}{% endfor %}{{ range(2) }}",
            False,
            {("params", "nodes")},
        ),
        ("{% set x = params.a %}{{ x.b }}", False, {("params", "a")}),
        ("{{ incident.title | lower }} {{ target }}", False, {("incident", "title"), ("target",)}),
        ("{{ incident.title.lower() }}", False, {("incident", "title", "lower")}),
        (
            "outputs.status == 200 and not params.force",
            True,
            {("outputs", "status"), ("params", "force")},
        ),
        ("{{ run.id }}", True, {("run", "id")}),
        ("no expressions", False, set()),
    ],
)
def test_references_lists_the_paths_an_expression_reads(text, condition, expected):
    assert expr_refs.references(text, condition=condition) == expected


def test_references_and_check_refuse_syntax_errors():
    with pytest.raises(ExpressionError, match="syntax error"):
        expr_refs.references("{{ params.node")
    with pytest.raises(ExpressionError, match="No filter named 'nofilter'"):
        expr_syntax.check("{{ params.node | nofilter }}")
    expr_syntax.check("params.node == 'x'", condition=True)
