"""The expression fuzzer's child process: ``python -m tests.expr_fuzz EXAMPLES MEMORY CPU``.

It caps its own address space (bytes) and CPU time (seconds) with ``resource.setrlimit``, then
lets hypothesis build runbook expressions from the language's costly pieces (big numbers,
powers, products, text filters with widths, ``%`` and ``str.format`` widths, repeats, joins,
ranges, nested loops, doubling in a loop) and evaluates each. Every one must evaluate or be
refused with the language's own error (ExpressionError); a MemoryError (also one wrapped in an
ExpressionError) or any other exception is a failure. It prints one JSON line: the counts, the
failures and its peak memory.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NUMBERS = st.one_of(
    st.integers(-3, 300),
    st.sampled_from([4096, 65536, 100_000, 400_000_000, 10**9, 2**64, 2**256, 10**30]),
)
WIDTHS = st.sampled_from([0, 1, 7, 80, 99_999, 100_001, 400_000_000])
TEXTS = st.sampled_from(["'x'", "'ab\\n'", "'\\t'", "'%s'", "'{}'", "''", "'y' * 1000"])


def _paren(text: str) -> str:
    return f"({text})"


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Expressions built from smaller ones."""
    return st.one_of(
        st.builds(lambda a, b: f"{_paren(a)} ** {_paren(b)}", inner, inner),
        st.builds(lambda a, b: f"{_paren(a)} * {_paren(b)}", inner, inner),
        st.builds(lambda a, b: f"{_paren(a)} + {_paren(b)}", inner, inner),
        st.builds(lambda a, b: f"{_paren(a)} ~ {_paren(b)}", inner, inner),
        st.builds(lambda a, b: f"{_paren(a)} % {_paren(b)}", inner, inner),
        st.builds(lambda a, b: f"[{a}, {b}]", inner, inner),
        st.builds(lambda a, w: f"{_paren(a)}|center({w})", inner, WIDTHS),
        st.builds(lambda a, w: f"{_paren(a)}|indent({w}, true)", inner, WIDTHS),
        st.builds(
            lambda a, w: f"{_paren(a)}|wordwrap({max(w, 1)}, wrapstring='--')", inner, WIDTHS
        ),
        st.builds(lambda w, a: f"'%{w}s'|format({a})", WIDTHS, inner),
        st.builds(lambda w, a: f"'%.{w}f' % {_paren(a)}", WIDTHS, inner),
        st.builds(lambda w, a: f"'{{:>{w}}}'.format({a})", WIDTHS, inner),
        st.builds(lambda a, w: f"{_paren(a)}.ljust({w})", inner, WIDTHS),
        st.builds(lambda a, w: f"{_paren(a)}.rjust({w})", inner, WIDTHS),
        st.builds(lambda a, b: f"{_paren(a)}|join({b})", inner, TEXTS),
        st.builds(lambda a, b, c: f"{_paren(a)}|replace({b}, {c})", inner, TEXTS, TEXTS),
        st.builds(lambda a: f"{_paren(a)}|list", inner),
        st.builds(lambda a: f"{_paren(a)}|sum(start=[])", inner),
        st.builds(lambda a, w: f"{_paren(a)}|batch({max(w, 1)}, 0)|list", inner, WIDTHS),
        st.builds(lambda a, w: f"{_paren(a)}|tojson(indent={w})", inner, WIDTHS),
        st.builds(lambda a, w: f"{_paren(a)}|map('center', {w})|list", inner, WIDTHS),
        st.builds(lambda a: f"{_paren(a)}|string", inner),
    )


ATOMS = st.one_of(
    NUMBERS.map(str),
    TEXTS,
    st.sampled_from(["params.n", "params.s", "params.items", "range(params.n)"]),
    NUMBERS.map(lambda n: f"range({n})"),
)
EXPRESSIONS = st.recursive(ATOMS, _grow, max_leaves=6)


def _templates() -> st.SearchStrategy[str]:
    loops = st.builds(
        lambda a, b, c: (
            f"{{% for i in {_paren(a)} %}}{{% for j in {_paren(b)} %}}"
            f"{{{{ {c} }}}}{{% endfor %}}{{% endfor %}}"
        ),
        EXPRESSIONS,
        EXPRESSIONS,
        EXPRESSIONS,
    )
    doubling = st.builds(
        lambda a, n: (
            f"{{% set ns = namespace(v={a}) %}}{{% for i in range({n}) %}}"
            "{% set ns.v = ns.v ~ ns.v %}{% endfor %}{{ ns.v|length }}"
        ),
        EXPRESSIONS,
        NUMBERS,
    )
    single = EXPRESSIONS.map(lambda e: f"{{{{ {e} }}}}")
    return st.one_of(single, single, loops, doubling)


def _ran_out_of_memory(exc: BaseException) -> bool:
    """True if a MemoryError is anywhere in the chain of exceptions behind ``exc``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def main(examples: int, memory: int, cpu: int) -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))

    from incidentbot.runbooks import expr  # imported under the caps

    context = {"params": {"n": 64, "s": "node-1", "items": ["a", "b"]}, "vars": {}}
    counts = {"evaluated": 0, "refused": 0, "other_errors": 0}
    failures: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_templates())
    def run(template: str) -> None:
        try:
            expr.render(template, context)
        except expr.ExpressionError as exc:
            if _ran_out_of_memory(exc):  # an error message over a MemoryError hides nothing
                failures.append(f"{template!r}: MemoryError behind {exc.message[-120:]!r}")
                return
            counts["refused" if ": refused: " in exc.message else "other_errors"] += 1
            return
        except BaseException as exc:  # MemoryError, RecursionError, a bug: all failures
            failures.append(f"{template!r}: {type(exc).__name__}: {str(exc)[:200]}")
            return
        counts["evaluated"] += 1

    run()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**counts, "failures": failures, "peak_kib": peak_kib}


if __name__ == "__main__":
    n, mem, cpu = (int(a) for a in sys.argv[1:4])
    print(json.dumps(main(n, mem, cpu)))
