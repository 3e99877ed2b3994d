"""The postmortem of a realistic SEV1 (tests/postmortem_scenario.py), rendered as Markdown and
HTML and compared byte for byte with tests/golden/. Regenerate the golden files after an
intended change with ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_postmortem_render.py``
and review the diff."""

from __future__ import annotations

import difflib
import gc
import os
from pathlib import Path

import pytest
from sqlmodel import delete

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.people.models import Person
from incidentbot.postmortems import lifecycle
from incidentbot.postmortems.models import PUBLISHED
from incidentbot.postmortems.publish import publish
from incidentbot.postmortems.render import render
from tests.postmortem_scenario import (
    build_incident,
    controlled_clock,
    effect_server,
    scenario_settings,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
SECRET = "lb-admin-9f8e7d6c5b4a3921"


@pytest.fixture
def scenario(engine, tmp_path):
    with effect_server() as srv, controlled_clock() as clock:
        settings = scenario_settings(tmp_path, srv.url)
        yield build_incident(engine, settings, clock)


def rendered(sc, fmt: str, settings=None) -> str:
    with db.transaction(sc.engine) as s:
        return render(s, settings or sc.settings, svc.get(s, sc.ref), fmt).text


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        return
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 .venv/bin/pytest {__file__}"
    expected = path.read_bytes().decode("utf-8")
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"golden/{name}",
                tofile="rendered",
            )
        )
        pytest.fail(
            f"{name} differs from the golden file (UPDATE_GOLDEN=1 regenerates it):\n"
            + "".join(diff.splitlines(keepends=True)[:120])
        )


def test_markdown_matches_the_golden_file_and_is_stable(scenario):
    first = rendered(scenario, "md")
    assert rendered(scenario, "md") == first  # same rows, same bytes
    check_golden("postmortem.md", first)


def test_html_matches_the_golden_file_and_is_stable(scenario):
    first = rendered(scenario, "html")
    assert rendered(scenario, "html") == first
    check_golden("postmortem.html", first)


def test_rendering_leaves_the_cycle_collector_as_it_found_it(scenario):
    # A document is built with the collector held off; the process must get it back.
    assert gc.isenabled()
    first = rendered(scenario, "md")
    assert gc.isenabled()
    gc.disable()  # off already (a server starting up): left off
    try:
        assert rendered(scenario, "md") == first
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_each_person_is_looked_up_once_per_document(scenario, monkeypatch):
    """A long timeline names the same people on every entry: the directory resolves each
    distinct actor once per document, not once per entry."""
    from collections import Counter

    from incidentbot.people import directory

    asked: Counter[str | None] = Counter()
    find = directory.Directory.find

    def counted(self, actor):  # type: ignore[no-untyped-def]
        asked[actor] += 1
        return find(self, actor)

    monkeypatch.setattr(directory.Directory, "find", counted)
    md = rendered(scenario, "md")
    assert "Bob Lee" in md and asked["U01BOB"] == 1, asked
    assert max(asked.values()) == 1, [a for a, n in asked.items() if n > 1]


def test_the_document_tells_the_story(scenario):
    md = rendered(scenario, "md")
    html = rendered(scenario, "html")
    for text in (md, html):
        assert SECRET not in text  # the secret param is masked, even in the run's params
        assert "U01BOB" not in text and "U01ALICE" not in text  # names, not Slack ids
        assert "Bob Lee" in text and "Dana Okafor" in text and "carol" in text
    # severity history and the time spent at each
    assert "- 2025-03-11 10:12:00: SEV2 → SEV1, by Bob Lee" in md
    assert "| SEV1 Critical | 23m 00s |" in md and "| SEV2 Major | 27m 00s |" in md
    # metrics from the milestones
    assert "| Time to detect | impact started → detected | 6m 30s |" in md
    assert "| Time to acknowledge | detected → acknowledged | 7m 10s |" in md
    assert "| Time to resolve | impact started → resolved | 1h 00m |" in md
    # the timeline: pins, pages and acknowledgements, updates, each runbook step's outcome
    assert "*Pinned:* rpc-1 head stuck at 21,993,004" in md
    assert "@Bob Lee is reading the geth logs" in md
    assert "Bob Lee acknowledged PagerDuty #4242 (rpc)" in md
    assert "*Status update:* Public RPC is back to normal" in md
    # one row per runbook run in the timeline; its steps are under Actions taken
    timeline = md.split("## Timeline", 1)[1].split("## Actions taken", 1)[0]
    assert timeline.count("Runbook restart-node (run 1)") == 1
    assert timeline.count("Runbook failover-rpc (run 2)") == 1
    assert "Runbook failover-rpc (run 2) succeeded" in timeline and "step “" not in timeline
    assert "| 3 | Is the node in sync? | failed | rpc-1 is still 42 blocks behind" in md
    assert "| Drop the primary's cache | skipped | when: {{ params.drain_cache }} is false |" in md
    # milestones set later are told at their own time, before the declare
    assert timeline.index("Impact started at") < timeline.index("Declared INC-1")
    # every metric says where its times came from
    assert (
        "| Time to acknowledge | detected → acknowledged | 7m 10s | detected: set by Alice "
        "Nakamura; acknowledged: the first acknowledgement (a page or a status change) |"
    ) in md
    # every section a reader expects, the ones not written yet with how to write them
    for title in ("Summary", "Impact", "Trigger", "Detection", "Resolution", "Where we got lucky"):
        assert f"\n## {title}\n" in md and f"<h2>{title}</h2>" in html
    assert "`/incident postmortem edit trigger` in the incident's channel" in md
    assert "No alert fired: Alice Nakamura declared it at 2025-03-11 10:02:00." in md
    # actions taken: who ran and approved each run, its params (masked), steps and outcome
    assert "### Runbook failover-rpc, run 2: succeeded" in md
    assert "approved by Bob Lee at 2025-03-11 10:18:30" in md
    assert "`api_key=***`" in md and "`drain_cache=false`" in md
    assert "### Runbook restart-node, run 1: failed" in md
    # the language check flags the blaming sentence and says what to write instead
    assert "“human error”" in md and "“should have”" in md
    # action items and links
    assert "| 1 | Alert on a head that stops advancing, not only on lag | Dana Okafor |" in md
    assert "https://nodeworks.pagerduty.com/incidents/Q1RPC4242" in md
    assert "https://slack.com/app_redirect?channel=C01INC1" in md
    assert "https://incidentbot.example.com/runs/2?sig=" in md


def test_times_follow_the_team_time_zone(scenario):
    berlin = scenario.settings.model_copy(update={"timezone": "Europe/Berlin"})
    md = rendered(scenario, "md", berlin)
    assert "Times are in Europe/Berlin." in md
    assert "| Declared | 2025-03-11 11:02:00 |" in md  # CET, UTC+1 in March


def test_without_stored_names_documents_show_the_ids(scenario):
    with db.transaction(scenario.engine) as s:
        s.exec(delete(Person))  # type: ignore[call-overload]
    md = rendered(scenario, "md")
    assert "| Declared by | U01ALICE |" in md
    assert "Bob Lee acknowledged PagerDuty #4242" in md  # PagerDuty's own name for him
    assert "@U01BOB is reading the geth logs" in md


def test_publishing_writes_both_documents_and_records_the_path(scenario):
    sc = scenario
    sc.clock.at("16:00:00")
    with db.transaction(sc.engine) as s:
        inc = svc.get(s, sc.ref)
        lifecycle.change_status(s, sc.settings, inc, "in_review", actor="U01BOB", now=sc.clock.now)
    sc.clock.at("17:00:00")
    with db.transaction(sc.engine) as s:
        done = publish(s, sc.settings, svc.get(s, sc.ref), actor="U01BOB", now=sc.clock.now)
    folder = sc.settings.data_dir.resolve() / "postmortems"
    assert done.markdown == folder / "INC-1-postmortem.md"
    assert done.html == folder / "INC-1-postmortem.html"
    with db.transaction(sc.engine) as s:
        row = lifecycle.find(s, svc.get(s, sc.ref))
        assert row is not None
        assert row.status == PUBLISHED
        assert row.published_path == str(done.markdown)
    md = done.markdown.read_text()
    assert md == rendered(sc, "md")  # what is published is what renders now
    assert done.html.read_text() == rendered(sc, "html")
    assert "| Postmortem | Published, 2025-03-11 17:00:00 |" in md
    assert f"Published to `{done.markdown}`." in md
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files


def test_what_people_typed_cannot_break_out_of_either_format(engine, settings):
    nasty = "<script>alert(1)</script> | *bold* [x](javascript:alert(1)) `tick`"
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC <b>down</b> | *now*", severity="SEV2", actor="alice")
        svc.add_note(s, settings, "INC-1", nasty + "\n# not a heading", actor="bob")
        svc.resolve(s, settings, "INC-1", "fixed & done", actor="alice")
    with db.transaction(engine) as s:
        inc = svc.get(s, "INC-1")
        md = render(s, settings, inc, "md").text
        page = render(s, settings, inc, "html").text
    assert "<script>" not in page and "<b>down</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "RPC &lt;b&gt;down&lt;/b&gt; | *now*" in page
    assert "fixed &amp; done" in page
    assert "# Postmortem: INC-1 RPC \\<b\\>down\\</b\\> \\| \\*now\\*\n" in md
    assert (
        "· *Note:* \\<script\\>alert(1)\\</script\\> \\| \\*bold\\* \\[x\\](javascript:alert(1))"
        in md
    )
    assert "\\`tick\\`\\\n  \\# not a heading" in md  # a hard break, the line kept as text
