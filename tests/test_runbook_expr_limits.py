"""The cost model of runbook expressions: what used to hold the interpreter or eat its memory is
refused with a message naming the limit, before the work is done; ordinary values still work."""

from __future__ import annotations

import threading
import time

import pytest

from incidentbot.runbooks import expr, expr_limits
from incidentbot.runbooks.expr import ExpressionError

BIG = "the result would be over 100,000 characters or items (the limit of one value)"
BITS = "the number would be over 4096 bits (the limit of a number)"
STEPS = "over 100,000 loop iterations and calls (the limit of one evaluation)"
TEXT = "the rendered text would be over 100,000 characters (the limit of a rendered template)"


@pytest.fixture
def ctx() -> dict:
    return {
        "params": {"n": 64, "width": 400_000_000, "node": "rpc-2", "wei": 10**18},
        "steps": {"check": {"outputs": {"lag": 3}, "status": "succeeded"}},
        "vars": {},
    }


def refused(template: str, ctx: dict) -> str:
    with pytest.raises(ExpressionError) as info:
        expr.render(template, ctx)
    message = info.value.message
    assert message.startswith(f"{template!r}: refused: "), message
    return message


@pytest.mark.parametrize(
    "template",
    [
        "{{ ((((2**256)**256)**256)**params.n) }}",  # the exponent alone looked harmless
        "{{ (2**256)**256 }}",
        "{{ 2**4096 }}",
        "{{ (2**4000) * (2**200) }}",
        "{{ 10**params.width }}",
    ],
)
def test_powers_and_products_of_big_numbers_are_refused_by_their_bits(ctx, template):
    assert refused(template, ctx).endswith(BITS)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x'|center(params.width) }}",
        "{{ 'x'|center(400000000) }}",
        "{{ '%400000000s'|format('x') }}",
        "{{ '%-*s'|format(params.width, 'x') }}",
        "{{ '%.400000000f'|format(1.5) }}",
        "{{ '%400000000s' % 'x' }}",
        "{{ '%(a)s%(a)400000000s' % {'a': 'x'} }}",
        "{{ '%.*f' % (params.width, 1.5) }}",
        "{{ '%400000000s'.encode() % 'x'.encode() }}",
        "{{ 'x'|indent(400000000, true) }}",
        "{{ 'x'|indent('y' * 90000, true) ~ 'z'|indent('y' * 90000, true) }}",
        "{{ 'x'.ljust(400000000) }}",
        "{{ 'x'.rjust(params.width) }}",
        "{{ 'x'.center(params.width) }}",
        "{{ '7'.zfill(400000000) }}",
        "{{ '\t'.expandtabs(400000000) }}",
        "{{ '{:>400000000}'.format('x') }}",
        "{{ '{:{w}}'.format('x', w=params.width) }}",
        "{{ '{0:.400000000f}'.format(1.5) }}",
        "{{ '{x:400000000}'.format_map({'x': 'y'}) }}",
        "{{ ('ab ' * 30000)|wordwrap(1, wrapstring='-' * 10) }}",
        "{{ ('x' * 100000)|replace('x', 'yy') }}",
        "{{ ('x' * 1000).replace('x', 'y' * 1000) }}",
        "{{ 'x' * 100001 }}",
        "{{ ['x'] * 100001 }}",
        "{{ ['x' * 1000] * 1000 }}",
        "{{ [['x' * 1000] * 100] * 100 }}",
        "{{ ('x' * 60000) + ('x' * 60000) }}",
        "{{ ('x' * 60000) ~ ('x' * 60000) }}",
        "{{ ('x' * 1000)|list|join('y' * 1000) }}",
        "{{ ('-' * 1000).join(['x' * 1000] * 99) }}",
        "{{ [1]|batch(1000000000, 0)|list }}",
        "{{ [1]|slice(1000000000, 0)|list }}",
        "{{ ['x' * 1000]|tojson(indent=1000) }}",
        "{{ (1).to_bytes(400000000, 'big') }}",
        "{{ 'x'.encode() * 1000000000 }}",
    ],
)
def test_widths_repeats_and_joins_are_refused_before_they_allocate(ctx, template):
    assert refused(template, ctx).endswith(BIG)


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}{% endfor %}{% endfor %}",
        "{% for c in 'x' * 100000 %}{% for d in 'y' * 100000 %}{% endfor %}{% endfor %}",
        "{% macro f() %}{% for i in range(1000) %}{% endfor %}{% endmacro %}"
        "{% for i in range(1000) %}{{ f() }}{% endfor %}",
    ],
)
def test_loop_iterations_are_counted_across_nested_loops(ctx, template):
    assert refused(template, ctx).endswith(STEPS)


def test_a_recursive_loop_is_bounded(ctx):
    refused("{% for x in range(3) recursive %}{{ loop(range(100000)) }}{% endfor %}", ctx)
    refused("{% for x in range(3) recursive %}{{ loop(range(10)) }}{% endfor %}", ctx)


def test_a_template_cannot_render_more_than_the_limit(ctx):
    assert refused("{% for i in range(200) %}{{ 'x' * 1000 }}{% endfor %}", ctx).endswith(TEXT)
    message = refused(
        "{% set t %}{% for i in range(200) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}x", ctx
    )
    assert message.endswith(BIG)  # a block's text is bounded as it is built
    many = "{{ 'x' * 60000 }}{{ 'y' * 60000 }}"
    with pytest.raises(ExpressionError, match="refused: the rendered text would be over 100,000"):
        expr.render_plan(many, ctx)


def test_doubling_in_a_loop_stops_at_the_limit(ctx):
    template = (
        "{% set ns = namespace(s='x', n=3) %}{% for i in range(64) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.s|length }}"
    )
    message = refused(template, ctx)
    assert message.endswith(BIG) or message.endswith(BITS)


def test_what_one_evaluation_makes_is_bounded_in_all(ctx):
    message = refused("{{ range(100000)|map('center', 100000)|list|length }}", ctx)
    assert message.endswith(
        "it would make over 2,000,000 characters or items in all (the limit of one evaluation)"
    )


def test_recursion_is_refused_not_crashing(ctx):
    message = refused("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", ctx)
    assert message.endswith("calls nested too deeply")


def test_a_spent_time_budget_refuses_at_the_next_step(ctx):
    with expr_limits.time_budget(0, "the test's budget"):
        message = refused("{% for i in range(3) %}{{ i }}{% endfor %}", ctx)
    assert message.endswith("it used over 0 s of CPU time (the time limit of the test's budget)")
    assert expr.render("{% for i in range(3) %}{{ i }}{% endfor %}", ctx) == "012"


def test_time_spent_waiting_for_a_core_is_not_charged(ctx, monkeypatch):
    """A busy machine (an outage) can leave the evaluating thread waiting for a core; the
    limit counts the work the expressions do, so a cheap plan is not refused for the wait."""
    blocked, release = threading.Event(), threading.Event()
    check_binop = expr_limits.check_binop

    def waits(op, left, right):  # the thread is off the CPU here, as if descheduled
        if op == "*" and not release.is_set():
            blocked.set()
            release.wait()
        return check_binop(op, left, right)

    monkeypatch.setattr(expr_limits, "check_binop", waits)
    out: list[str] = []
    budget = 0.05

    def plan() -> None:
        with expr_limits.time_budget(budget, "the test's budget"):
            out.append(expr.render("{% for i in range(40) %}{{ i * 2 }}{% endfor %}", ctx))

    thread = threading.Thread(target=plan)
    thread.start()
    assert blocked.wait(20)
    began = time.monotonic()
    while time.monotonic() - began <= 2 * budget:  # wall time passes; the thread uses no CPU
        threading.Event().wait(budget)
    release.set()
    thread.join(20)
    assert out == ["".join(str(i * 2) for i in range(40))]


def test_conditions_and_dry_runs_are_bounded_too(ctx):
    with pytest.raises(ExpressionError, match="refused: the number would be over 4096 bits"):
        expr.condition("(2**256)**params.n > 0", ctx)
    with pytest.raises(ExpressionError, match="refused: the number would be over 4096 bits"):
        expr.condition_plan("(2**256)**params.n > 0 or steps.check.outputs.lag", ctx)
    # reading a run-time value does not turn a refusal into a placeholder
    with pytest.raises(ExpressionError, match=r"refused: the result would be over 100,000"):
        expr.render_plan("{{ steps.check.outputs.lag ~ ('x'|center(params.width)) }}", ctx)
    with pytest.raises(ExpressionError, match=r"refused: the result would be over 100,000"):
        expr.render_plan("{% if true %}{{ 'x'|center(params.width) }}{% endif %}", ctx)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 2**256 - 1 }}", 2**256 - 1),
        ("{{ (2**256 - 1) * (2**256 - 1) }}", (2**256 - 1) ** 2),
        ("{{ params.wei * 10**18 // 3 }}", 10**36 // 3),
        ("{{ 2**4095 > 0 }}", True),
        ("{{ ('x' * 100000)|length }}", 100000),
        ("{{ 'x'|center(11) }}", "     x     "),
        ("{{ '%08.3f'|format(3.14159) }}", "0003.142"),
        ("{{ '%-6s|' % 'ab' }}", "ab    |"),
        ("{{ '{:>6}|{:.2f}'.format('ab', 2) }}", "    ab|2.00"),
        ("{{ 'a\nb'|indent(2, true) }}", "  a\n  b"),
        ("{{ 'a b c'|wordwrap(1) }}", "a\nb\nc"),
        ("{{ range(100000)|list|length }}", 100000),
        ("{{ [[1], [2, 3]]|sum(start=[]) }}", [1, 2, 3]),
        ("{{ [1, 2, 3]|sum }}", 6),
        ("{{ ['a', 'b']|join(', ') }}", "a, b"),
        ("{{ '-'.join(['a', 'b']) }}", "a-b"),
        ("{{ {'a': [1, 2]}|tojson }}", '{"a": [1, 2]}'),
        ("{{ [1, 2, 3, 4, 5]|batch(2)|list }}", [[1, 2], [3, 4], [5]]),
        ("{% for x in [1, 2] %}{{ loop.length }}{{ loop.last }} {% endfor %}", "2False 2True "),
        ("{% for x in range(5) if x is odd %}{{ loop.index }}:{{ x }} {% endfor %}", "1:1 2:3 "),
        ("{% for x in [] %}{% else %}empty{% endfor %}", "empty"),
        ("{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}", "a=1"),
        (
            "{% for x in [[1, [2]]] recursive %}{{ loop(x) if x is iterable else x }}{% endfor %}",
            "12",
        ),
        ("{% set a, b = 1, 2 %}{{ a + b }}", "3"),
        ("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(1) ~ m(2) }}", "<1><2>"),
    ],
)
def test_ordinary_values_are_unchanged(ctx, template, expected):
    assert expr.render(template, ctx) == expected


def test_nested_loops_within_the_budget_still_run(ctx):
    template = "{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}done"
    assert expr.render(template, ctx) == "done"


def test_sizes_count_through_references():
    text = "x" * 1000
    assert expr_limits.size([text] * 100) == 100_000
    assert expr_limits.size({"a": [text, text]}) == 2002  # "a", the list, the two texts
    assert expr_limits.size([]) == 1 and expr_limits.size([[]] * 5) == 5
    assert expr_limits.size(list(range(10))) == 10
    assert expr_limits.size([[0]] * 10) == 20


def test_a_deep_chain_repeated_is_refused_by_its_depth(ctx):
    chain = (
        "{% set ns = namespace(v=[]) %}{% for i in range(300) %}{% set ns.v = [ns.v] %}{% endfor %}"
    )
    assert expr.render(chain + "{{ ns.v|length }}", ctx) == "1"
    assert refused(chain + "{{ ([ns.v] * 100000)|length }}", ctx).endswith(BIG)
