"""Fuzzing the expression language under a memory and CPU cap: every generated expression
evaluates or is refused with the language's own error; none runs out of memory, none raises
anything else, and the process is never killed by the caps (see ``tests/expr_fuzz.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = 200  # about 5 s of CPU
MEMORY = 512 << 20  # bytes of address space for the whole child (interpreter included)
CPU = 50  # seconds


def test_every_generated_expression_evaluates_or_is_refused_within_the_caps():
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.expr_fuzz", str(EXAMPLES), str(MEMORY), str(CPU)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])  # < 0: killed by a cap
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    assert report["evaluated"] > 0 and report["refused"] > 0, report
    total = report["evaluated"] + report["refused"] + report["other_errors"]
    assert total >= EXAMPLES, report
