"""``incidentbot postmortem``: the lifecycle from a terminal, on both back ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from incidentbot import db
from tests.conftest import count

WRONG = "Bob forgot to renew the certificate; it was human error."


@pytest.fixture
def resolved(cli):
    """INC-1: a SEV2, resolved (so its postmortem exists and is due)."""
    assert cli("incident", "declare", "RPC", "p99", "above", "2s", "--sev", "2")[0] == 0
    assert cli("incident", "assign", "INC-1", "commander", "bob")[0] == 0
    assert cli("incident", "resolve", "INC-1", "failed", "over", "to", "rpc-3")[0] == 0
    return cli


def postmortems(database_url: str) -> list[tuple]:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT i.number, p.status, p.required, p.due_date, p.owner, p.published_path "
                    "FROM postmortem p JOIN incident i ON i.id = p.incident_id ORDER BY i.number"
                )
            ).all()
        return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def test_resolving_creates_the_postmortem_the_policy_requires(cli, database_url):
    for args in (
        ("incident", "declare", "Disk filling on rpc-4", "--sev", "3"),
        ("incident", "resolve", "INC-1", "pruned the logs"),
        ("incident", "declare", "Validators offline", "--sev", "1"),
        ("incident", "sev", "INC-2", "3"),  # lowered before the resolve: still SEV1 at worst
        ("incident", "resolve", "INC-2", "restarted the signer"),
    ):
        code, _out, err = cli(*args)
        assert code == 0, err
    rows = postmortems(database_url)
    assert len(rows) == 1  # SEV3 does not require one
    number, status, required, due, owner, path = rows[0]
    assert (number, status, bool(required), owner, path) == (2, "draft", True, "alice", None)
    assert due is not None
    # reopening and resolving again keeps the one postmortem
    assert cli("incident", "reopen", "INC-2")[0] == 0
    assert cli("incident", "resolve", "INC-2", "restarted the signer again")[0] == 0
    assert len(postmortems(database_url)) == 1


def test_render_to_stdout_or_a_file(resolved, tmp_path):
    code, out, err = resolved("postmortem", "render", "INC-1")
    assert code == 0, err
    assert out.startswith("# Postmortem: INC-1 RPC p99 above 2s\n")
    assert "| Required | yes (required by the SEV2 policy) |" in out
    assert err == ""
    code, out, err = resolved("postmortem", "render", "INC-1", "--out", str(tmp_path / "pm.html"))
    assert code == 0, err
    page = (tmp_path / "pm.html").read_text()
    assert page.startswith("<!doctype html>")  # the format follows the file name
    assert "INC-1: wrote the postmortem (html" in out
    code, out, _ = resolved("postmortem", "render", "INC-1", "-f", "md", "-o", str(tmp_path / "x"))
    assert (tmp_path / "x").read_text().startswith("# Postmortem")


def test_edit_sections_and_see_the_language_check(resolved, tmp_path):
    code, out, err = resolved("postmortem", "edit", "INC-1", "--section", "wrong", "--text", WRONG)
    assert code == 0, err
    assert out == "INC-1 postmortem: what_went_wrong updated (Draft)\n"
    assert "warning: what_went_wrong line 1: “bob forgot”" in err.lower()
    assert "warning: what_went_wrong line 1: “human error”" in err
    notes = tmp_path / "well.md"
    notes.write_text("- The alert fired in two minutes.\n- The runbook worked.\n")
    code, _out, err = resolved(
        "postmortem", "edit", "INC-1", "-s", "what-went-well", "--file", str(notes)
    )
    assert code == 0 and err == ""
    code, out, err = resolved("postmortem", "render", "INC-1")
    assert "## What went well\n\n- The alert fired in two minutes.\n- The runbook worked.\n" in out
    assert "warning: what_went_wrong line 1: “human error”" in err  # on stderr when rendering
    assert "\n- What went wrong, line 1: “human error” in “" in out  # and in the document
    code, out, err = resolved("postmortem", "check", "INC-1")
    assert code == 1
    assert "what_went_wrong line 1: “forgot to”" in out
    assert "INC-1: 3 passages may read as blaming" in err
    code, out, err = resolved(
        "postmortem", "edit", "INC-1", "-s", "wrong", "--text", "The renewal relied on memory."
    )
    assert code == 0 and err == ""
    code, out, _ = resolved("postmortem", "check", "INC-1")
    assert (code, out) == (0, "INC-1: no blaming language found in 2 section(s)\n")
    assert resolved("postmortem", "edit", "INC-1", "-s", "well", "--clear")[0] == 0
    assert resolved("postmortem", "edit", "INC-1", "--owner", "carol")[1] == (
        "INC-1 postmortem: owner is carol\n"
    )
    _, out, _ = resolved("postmortem", "render", "INC-1")
    assert "## What went well\n\n*Not written yet.*" in out
    assert "| Owner | carol |" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--section", "nope", "--text", "x"),
            "unknown section 'nope': allowed are summary, impact, trigger, detection, resolution, "
            "what_went_well",
        ),
        (("--section", "well"), "give exactly one of --text, --file or --clear with --section"),
        (("-s", "well", "--text", "x", "--clear"), "(--text and --clear)"),
        (("-s", "well", "--text", "   "), "the text for what_went_well is empty"),
        (
            ("-s", "well", "--file", "/nonexistent/notes.md"),
            "--file /nonexistent/notes.md: no such",
        ),
        ((), "nothing to change: give --section"),
        (("--text", "x"), "--text, --file and --clear need --section"),
        (("-s", "well", "--text", "x" * 20_001), "is 20001 characters: at most 20000"),
    ],
)
def test_bad_edits_are_refused_clearly(resolved, args, message):
    code, out, err = resolved("postmortem", "edit", "INC-1", *args)
    assert code == 1, (out, err)
    assert err.startswith("error: ") and message in err


def test_the_lifecycle_refuses_invalid_transitions(resolved, database_url, tmp_path):
    cli = resolved
    code, _, err = cli("postmortem", "status", "INC-1", "published")
    assert code == 1
    assert "the INC-1 postmortem is a draft: move it to review first" in err
    code, _, err = cli("postmortem", "publish", "INC-1")
    assert code == 1 and "is a draft: move it to review first" in err
    code, _, err = cli("postmortem", "status", "INC-1", "draft")
    assert (code, err) == (1, "error: the INC-1 postmortem is already draft\n")
    code, _, err = cli("postmortem", "status", "INC-1", "done")
    assert "unknown postmortem status 'done': allowed are draft, in_review, published" in err
    code, out, err = cli("postmortem", "status", "INC-1", "in-review")
    assert (code, out) == (0, "INC-1 postmortem: draft → in review\n"), err
    code, out, err = cli("postmortem", "status", "INC-1", "published")
    assert code == 0, err
    folder = tmp_path / "data" / "postmortems"
    assert out == (
        f"INC-1 postmortem published:\n  {folder / 'INC-1-postmortem.md'}\n"
        f"  {folder / 'INC-1-postmortem.html'}\n"
    )
    published = (folder / "INC-1-postmortem.md").read_text()
    assert "| Postmortem | Published, " in published
    assert (folder / "INC-1-postmortem.html").read_text().startswith("<!doctype html>")
    assert postmortems(database_url)[0][1] == "published"
    assert postmortems(database_url)[0][5] == str(folder / "INC-1-postmortem.md")
    code, _, err = cli("postmortem", "edit", "INC-1", "-s", "well", "--text", "x")
    assert "the INC-1 postmortem is published: move it back to in_review to change it" in err
    code, _, err = cli("postmortem", "status", "INC-1", "draft")
    assert "it can move to in_review, not draft" in err
    code, out, _ = cli("postmortem", "publish", "INC-1")  # refreshes the files
    assert code == 0 and out.startswith("INC-1 postmortem published again:")
    assert cli("postmortem", "status", "INC-1", "in_review")[0] == 0
    code, _, err = cli("postmortem", "list")
    assert code == 0


def test_review_needs_a_resolved_incident(cli, database_url):
    assert cli("incident", "declare", "Peers dropping", "--sev", "1")[0] == 0
    code, _, err = cli("postmortem", "status", "INC-1", "in_review")
    assert code == 1
    assert "INC-1 is triage: resolve it before its postmortem goes to in review" in err
    code, out, _ = cli("postmortem", "render", "INC-1")  # a draft renders any time
    assert code == 0 and "INC-1 is not resolved yet (Triage)" in out
    assert count_rows(database_url) == 0  # rendering writes nothing


def count_rows(database_url: str) -> int:
    engine = db.make_engine(database_url)
    try:
        return count(engine, "postmortem")
    finally:
        engine.dispose()


def test_list_shows_status_due_and_progress(resolved):
    code, out, err = resolved("postmortem", "list")
    assert code == 0, err
    assert "INC-1" in out and "draft" in out and "0/9" in out and "bob" in out


def test_unknown_incident_and_format_are_refused(resolved):
    code, _, err = resolved("postmortem", "render", "INC-9")
    assert (code, err) == (1, "error: no incident INC-9\n")
    code, _, err = resolved("postmortem", "render", "INC-1", "--format", "pdf")
    assert (code, err) == (1, "error: unknown format 'pdf': allowed are md, html\n")


def test_templates_can_be_overridden(resolved, tmp_path, monkeypatch):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "postmortem.md.j2").write_text("Our format: {{ d.ref }} ({{ d.status_label }})\n")
    monkeypatch.setenv("INCIDENTBOT_POSTMORTEMS__TEMPLATE_DIR", str(folder))
    code, out, _ = resolved("postmortem", "render", "INC-1")
    assert (code, out) == (0, "Our format: INC-1 (Draft)\n")
    code, out, _ = resolved("postmortem", "render", "INC-1", "--format", "html")
    assert out.startswith("<!doctype html>")  # the other template comes from the package
    (folder / "postmortem.md.j2").write_text("{% for x in %}\n")
    code, _, err = resolved("postmortem", "render", "INC-1")
    assert code == 1
    assert err.startswith("error: the postmortem template postmortem.md.j2 (line 1) failed:")


def test_a_missing_template_dir_is_refused(resolved, tmp_path, monkeypatch):
    monkeypatch.setenv("INCIDENTBOT_POSTMORTEMS__TEMPLATE_DIR", str(tmp_path / "nope"))
    code, _, err = resolved("postmortem", "render", "INC-1")
    assert code == 1
    assert f"postmortems.template_dir {tmp_path / 'nope'} is not a directory" in err


def test_the_publish_dir_setting_is_used(resolved, tmp_path, monkeypatch):
    target = tmp_path / "wiki" / "postmortems"
    monkeypatch.setenv("INCIDENTBOT_POSTMORTEMS__PUBLISH_DIR", str(target))
    assert resolved("postmortem", "status", "INC-1", "in_review")[0] == 0
    code, out, err = resolved("postmortem", "publish", "INC-1")
    assert code == 0, err
    assert Path(target / "INC-1-postmortem.md").exists()
    assert str(target / "INC-1-postmortem.html") in out
