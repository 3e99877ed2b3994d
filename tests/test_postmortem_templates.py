"""Every template in templates/ can be overridden by a setting, as docs/postmortems.md says:
the postmortem's Markdown and HTML and the report (``postmortems.template_dir``), the handoff
(``handoff.template_dir``). A template found in the folder replaces the shipped one; values
are still escaped for the medium."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.handoff import service as handoff

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (ROOT / "templates").glob("*.j2"))
T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_the_docs_name_a_working_setting_for_every_shipped_template():
    docs = (ROOT / "docs" / "postmortems.md").read_text()
    table = docs.split("| template | what it renders | how to override it |", 1)[1]
    table = table.split("\n\n", 1)[0]
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `templates/([\w.]+)` \|[^|]*\| .*?`([a-z_]+\.[a-z_]+)`", table,
                             re.MULTILINE)
    }  # fmt: skip
    assert sorted(rows) == SHIPPED
    settings = Settings()
    for name, setting in rows.items():
        section, field = setting.split(".")
        assert field in type(getattr(settings, section)).model_fields, (name, setting)


@pytest.fixture
def resolved(cli):
    assert cli("incident", "declare", "RPC", "<b>p99</b>", "above", "2s", "--sev", "2")[0] == 0
    assert cli("incident", "resolve", "INC-1", "failed", "over")[0] == 0
    return cli


def test_the_html_postmortem_is_overridden_and_still_escaped(resolved, tmp_path, monkeypatch):
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "postmortem.html.j2").write_text(
        "<article><h1>{{ d.ref }}: {{ d.title }}</h1>{{ d.section('impact').prompt }}</article>\n"
    )
    monkeypatch.setenv("INCIDENTBOT_POSTMORTEMS__TEMPLATE_DIR", str(folder))
    code, out, err = resolved("postmortem", "render", "INC-1", "--format", "html")
    assert code == 0, err
    assert out.startswith("<article><h1>INC-1: RPC &lt;b&gt;p99&lt;/b&gt; above 2s</h1>Who and")
    code, out, _ = resolved("postmortem", "render", "INC-1")  # Markdown: still the package's
    assert out.startswith("# Postmortem: INC-1 RPC \\<b\\>p99\\</b\\> above 2s\n")


def test_the_report_is_overridden(resolved, tmp_path, monkeypatch):
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "report.html.j2").write_text("<h1>Our report</h1><p>{{ period }}</p>\n")
    monkeypatch.setenv("INCIDENTBOT_POSTMORTEMS__TEMPLATE_DIR", str(folder))
    page = tmp_path / "report.html"
    code, _out, err = resolved("report", "--html", str(page))
    assert code == 0, err
    assert page.read_text() == (
        "<h1>Our report</h1><p>incidents declared from the first incident to now</p>\n"
    )


def _handoff(title: str) -> handoff.Handoff:
    rotation = Settings(
        handoff={
            "rotations": [
                {
                    "name": "rpc",
                    "schedule_id": "P0SCHED",
                    "channel": "oncall",
                    "cron": "0 9 * * MON",
                }
            ]
        }
    ).handoff.rotation("rpc")
    return handoff.Handoff(
        rotation,
        handoff.Shift(T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
        outgoing=[handoff.Person("Alice")],
        incoming=[handoff.Person("Bob")],
        open_incidents=[
            {
                "ref": "INC-7",
                "severity": "SEV2",
                "status": "triage",
                "age": "1h",
                "new": True,
                "commander": "Carol",
                "title": title,
                "channel": "<#C0INCIDENT>",
            }
        ],
    )


def test_the_handoff_is_overridden_and_still_escaped_for_slack(tmp_path):
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "handoff.md.j2").write_text(
        "*{{ rotation.name }}* handoff: {{ h.incoming | people }}\n"
        "{% for i in h.open_incidents %}• {{ i.ref }} {{ i.title }}\n{% endfor %}"
    )
    settings = Settings(handoff={"template_dir": str(folder)})
    h = _handoff("<!channel> rpc-1 *down*")
    text = handoff.render(h, settings.handoff.template_dir)
    assert text == "*rpc* handoff: Bob\n• INC-7 &lt;!channel&gt; rpc-1 *down*\n"
    shipped = handoff.render(h)  # without the setting: the package's template
    assert shipped != text and "INC-7" in shipped
    with pytest.raises(DomainError, match=r"handoff.template_dir .*nope is not a directory"):
        handoff.render(h, tmp_path / "nope")
