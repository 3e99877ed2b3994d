"""A refused expression during a real run: the step fails with the refusal, the run says so,
and nothing after it runs."""

from __future__ import annotations

RUNTIME = """
name: late-power
params:
  n: {type: int}
steps:
  - id: first
    uses: incident.note
    with: {text: "first"}
  - id: power
    uses: incident.note
    when: "steps.first.status == 'succeeded' and (2**256)**params.n > 0"
    with: {text: "power"}
  - id: after
    uses: incident.note
    with: {text: "after the power"}
"""


def test_a_refusal_known_only_at_run_time_fails_the_step(cli, tmp_path):
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "late-power.yaml").write_text(RUNTIME)
    cli("incident", "declare", "RPC", "down")
    code, out, err = cli("runbook", "plan", "late-power", "n=64")
    assert code == 0, out + err  # the plan cannot know steps.first.status yet
    code, out, err = cli("runbook", "run", "late-power", "n=64", "-i", "INC-1")
    assert code == 1, out + err
    assert "✓ first: done" in out and "✗ power: failed" in out, out
    assert "refused: the number would be over 4096 bits (the limit of a number)" in out + err
    assert "after: done" not in out
    code, out, _ = cli("timeline", "INC-1")
    assert "first" in out and "after the power" not in out
