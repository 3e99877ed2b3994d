"""The README's first command: the demo runs a whole incident and shows it."""

from __future__ import annotations

from incidentbot.cli import main


def test_slack_demo_runs_a_whole_incident(tmp_path, capsys):
    assert main(["demo", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # It ends with the postmortem it published from Slack: its path, then the document's head.
    md = tmp_path / "postmortems" / "INC-1-postmortem.md"
    assert f"7. The postmortem: {md} (and INC-1-postmortem.html beside it)" in out
    assert md.exists() and (tmp_path / "postmortems" / "INC-1-postmortem.html").exists()
    shown = out.split("7. The postmortem: ", 1)[1]
    assert "# Postmortem: INC-1 RPC p99 latency above 2s on mainnet" in shown
    assert "| Postmortem | Published, " in shown
    # The times a team sets from the channel make every metric known.
    metrics = [line for line in shown.splitlines() if line.strip().startswith("| Time to ")]
    assert [m.split("|")[1].strip() for m in metrics] == [
        "Time to detect", "Time to acknowledge", "Time to mitigate", "Time to resolve",
    ]  # fmt: skip
    assert not any("unknown" in m for m in metrics), metrics
    text = md.read_text()
    assert "The lag alert fired within minutes" in text and "Two backups were in sync" in text
    assert "#inc-1-rpc-p99-latency-above-2s-on-mainnet" in out
    assert "Topic:   INC-1 · SEV1 Critical · resolved" in out
    assert "[pinned]" in out and "*Resolution*: Drained rpc-2" in out
    assert "timeline.pinned        geth on rpc-2 is 40 blocks behind the head" in out
    assert "Unknown subcommand `frobnicate`." in out
    assert out.count("*INC-1*: RPC p99 latency above 2s on mainnet") == 1  # one digest message
    assert "page.triggered         Paged rpc: PagerDuty #1" in out
    assert "Bob Okafor   page.acknowledged      Bob Okafor acknowledged PagerDuty #1 (rpc)" in out
    assert out.count("page.resolved") == 1
    # the failover runbook on the lab (CI installs it; elsewhere the demo says it skipped it)
    if "runbook lab is not installed" not in out:
        assert "bob, the commander, clicks Approve on the run message" in out
        assert "The run succeeded: requests through HAProxy are now answered by node-" in out
        assert "*Runbook `failover-rpc-provider`* · run" in out and "*succeeded*" in out
        assert "runbook.step_succeeded" in out and "Failed over from node-1" in out


def test_cli_demo(tmp_path, capsys):
    assert main(["demo", "--cli", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "$ incidentbot incident declare" in out
    assert "Resolved: Drained rpc-2 and failed over to rpc-3; geth resynced" in out
