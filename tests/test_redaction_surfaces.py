"""Every secret of the corpus, on every surface people read: what Alertmanager sends becomes
titles, channel names, Slack messages, log lines, timeline events and rows without a secret in
them; what responders write on the timeline stays out of the postmortem; a runbook's secret
param stays hidden even when its value is also given to a param that is not secret."""

from __future__ import annotations

import io
import json
import logging
import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from html import unescape
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import select

from incidentbot import db
from incidentbot.alerts import routing
from incidentbot.alerts.payload import parse
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.incidents.naming import channel_name, slugify
from incidentbot.logs import RedactingFilter
from tests.secret_corpus import LOOKALIKES, PRIVATE_KEY_3, SECRETS, leaks
from tests.slack_harness import running_bot, wait_for
from tests.test_alerts_support import TOKEN as AM_TOKEN
from tests.test_alerts_support import alert, notification


def raw_rows(engine: Engine, skip: frozenset[tuple[str, str]] = frozenset()) -> str:
    """Every value of every row of every table, as stored (JSON as its text), but ``skip``'s
    ``(table, column)``: what someone with read access to the database sees."""
    tables = inspect(engine).get_table_names()
    values: list[str] = []
    with engine.connect() as conn:
        for table in tables:
            result = conn.execute(text(f'SELECT * FROM "{table}"'))
            columns = list(result.keys())
            for row in result:
                for column, value in zip(columns, row, strict=True):
                    if (table, column) in skip or value is None:
                        continue
                    if isinstance(value, dict | list):
                        value = json.dumps(value, ensure_ascii=False)
                    values.append(str(value))
    return "\n".join(values)


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything logged meanwhile, through the product's redacting filter (as ``serve``)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# -- alerts -------------------------------------------------------------------------------------

RULES: list[dict[str, Any]] = [
    # the default title: "<alertname> on <instance>: <summary>"
    {"name": "leaks", "matchers": ['alertname="SecretInLogs"'], "severity": "SEV2"},
    # a template that joins the summary into the title
    {
        "name": "templated",
        "matchers": ['alertname="KeyExposed"'],
        "severity": "SEV2",
        "title": "{{ labels.alertname }}: {{ annotations.summary }}",
    },
]


def test_a_title_joined_from_alert_values_is_masked_as_a_whole():
    # Each value alone is harmless: a name, and a 0x value alone (what ``cast`` prints for a
    # transaction). Joined, the name labels the value a key: the title must not show it.
    fired = alert("HotWalletPrivateKey", annotations={"summary": PRIVATE_KEY_3})
    payload, _ = parse(notification([fired], group="HotWalletPrivateKey"))
    assert payload.alerts[0].annotations["summary"] == PRIVATE_KEY_3
    title, problem = routing.title(None, payload.alerts[0], payload)
    assert (title, problem) == ("HotWalletPrivateKey: ***", None)
    when = datetime(2026, 12, 7, tzinfo=UTC)
    name = channel_name(
        "inc-{number}-{slug}", number=7, title=title, severity="SEV2", declared_at=when
    )
    assert name == "inc-7-hotwalletprivatekey"


def _titles(engine: Engine) -> list[str]:
    with db.transaction(engine) as s:
        return [i.title for i in s.exec(select(Incident).order_by(Incident.number)).all()]


def _channels_ready(engine: Engine, count: int) -> bool:
    with db.transaction(engine) as s:
        rows = s.exec(select(Incident)).all()
        return len(rows) == count and all(i.channel_id for i in rows)


# Masked before anything is stored: the back end is not what this checks (its other tests
# read the rows of both); one alert per corpus secret through the bot makes it the slowest.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_alert_secrets_reach_no_title_channel_message_log_or_row(engine):
    with (
        captured_logs() as logged,
        running_bot(engine, alertmanager_token=AM_TOKEN, alerts={"rules": RULES}) as (_, slack),
    ):
        base = slack.driver.bot_url.removesuffix("/slack/events")
        headers = {"Authorization": f"Bearer {AM_TOKEN}"}
        for n, (_what, secret_text, _secret) in enumerate(SECRETS):
            name = "KeyExposed" if n % 2 else "SecretInLogs"
            fired = alert(
                name,
                instance=f"rpc-{n}",
                annotations={"summary": secret_text, "description": secret_text},
            )
            answer = httpx.post(
                f"{base}/webhooks/alertmanager",
                json=notification([fired], group=f"{name}-{n}"),
                headers=headers,
            )
            assert answer.status_code == 200, answer.text
        wait_for(
            lambda: _channels_ready(engine, len(SECRETS)),
            timeout=120,
            what="an incident and its channel per alert",
        )
        titles = _titles(engine)
        calls = slack.requests()
        names = [c.args.get("name", "") for c in calls if c.method == "conversations.create"]
        sent = json.dumps([c.args for c in calls], ensure_ascii=False)
        shown = slack.transcript()
        with db.transaction(engine) as s:
            timeline = json.dumps(
                [
                    [e.summary, e.data]
                    for i in s.exec(select(Incident)).all()
                    for e in svc.timeline(s, i)
                ],
                ensure_ascii=False,
            )
    places = {
        "incident titles": "\n".join(titles),
        "channel names": "\n".join(names),
        "Slack calls": sent,
        "Slack channels": shown,
        "serve log": logged.getvalue(),
        "timeline": timeline,
        "database rows": raw_rows(engine),
    }
    assert leaks(places) == []
    # A channel name is the title folded to a slug: no secret may survive that either.
    slugs = [slugify(secret)[:12] for _, _, secret in SECRETS if len(slugify(secret)) >= 12]
    assert [s for s in slugs if any(s in name for name in names)] == []
    # and it was all there to leak: every alert declared, titled from its (masked) summary
    assert len(titles) == len(SECRETS) and len(names) == len(SECRETS)
    assert all("***" in title for title in titles), [t for t in titles if "***" not in t]
    assert titles[0].startswith("SecretInLogs on rpc-0: ") and titles[1].startswith("KeyExposed: ")
    assert "declared INC-" in logged.getvalue()


# -- notes, the timeline and the postmortem ---------------------------------------------------


def _timeline(engine: Engine, ref: str = "INC-1") -> list[dict[str, Any]]:
    with db.transaction(engine) as s:
        return [
            {"kind": e.kind, "summary": e.summary, "data": e.data}
            for e in svc.timeline(s, svc.get(s, ref))
        ]


def test_notes_reach_the_timeline_and_the_postmortem_masked(cli, engine):
    assert cli("incident", "declare", "RPC", "keys", "leaked", "--sev", "SEV2")[0] == 0
    code, _out, err = cli("incident", "note", "INC-1", "--", SECRETS[0][1])
    assert code == 0, err
    # the rest through the function every door calls (a CLI process per note is slow)
    with db.transaction(engine) as s:
        for _what, note, _ in SECRETS[1:]:
            svc.add_note(s, Settings(), "INC-1", note, actor="alice")
        for _what, readable in LOOKALIKES:
            svc.add_note(s, Settings(), "INC-1", readable, actor="alice")
    code, markdown, _ = cli("postmortem", "render", "INC-1")
    assert code == 0
    code, html, _ = cli("postmortem", "render", "INC-1", "--format", "html")
    assert code == 0
    events = _timeline(engine)
    timeline = json.dumps(events, ensure_ascii=False)
    places = {
        "timeline": timeline,
        # as read: Markdown escapes (``pk\\_live``) and HTML entities undone
        "postmortem (Markdown)": markdown.replace("\\", ""),
        "postmortem (HTML)": unescape(html),
        "database rows": raw_rows(engine),
    }
    assert leaks(places) == []
    # the notes are there, masked, and the look-alikes read as they were written
    notes = [e["summary"] for e in events if e["kind"] == "note"]
    assert len(notes) == len(SECRETS) + len(LOOKALIKES)
    assert all("***" in note for note in notes[: len(SECRETS)])
    assert notes[len(SECRETS) :] == [readable.strip() for _, readable in LOOKALIKES]
    assert "*Note:* leaked \\*\\*\\* in the deploy log" in markdown


def test_a_secret_title_is_masked_before_it_names_the_channel(engine):
    with running_bot(engine) as (_bot, slack):
        slack.driver.slash_command(f"declare sev2 signer {PRIVATE_KEY_3} leaked", user="alice")
        wait_for(lambda: _channels_ready(engine, 1), what="the incident's channel")
        names = [c.args["name"] for c in slack.requests("conversations.create")]
    assert names == ["inc-1-signer-leaked"]
    assert _titles(engine) == ["signer *** leaked"]


# -- runbook params ----------------------------------------------------------------------------

SECRET_VALUE = "Zq81vPx3Lw0Rk7Ny2Ud5-pass"  # no recognisable shape: only the param says secret

PASS_ALONG = """
name: pass-along
description: Hand a credential to a node
target: node
params:
  node: {type: string}
  password: {type: string, secret: true}
  comment: {type: string}
steps:
  - id: tell
    uses: incident.note
    with: {text: "node {{ params.node }}: {{ params.comment }}"}
"""


def test_a_secret_param_is_masked_where_another_param_repeats_it(cli, tmp_path, engine):
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "pass-along.yaml").write_text(textwrap.dedent(PASS_ALONG))
    args = [f"node={SECRET_VALUE}", f"password={SECRET_VALUE}", f"comment=pw {SECRET_VALUE}"]
    code, plan, err = cli("runbook", "plan", "pass-along", *args)
    assert code == 0, err
    assert "Params: node=***, password=***, comment=pw ***" in plan
    assert "Target (locked while it runs): ***" in plan
    assert cli("incident", "declare", "RPC", "auth", "fails", "--sev", "SEV2")[0] == 0
    code, ran, err = cli("runbook", "run", "pass-along", *args, "-i", "INC-1")
    assert code == 0, err
    assert re.search(r"Run \d+ succeeded", ran), ran
    code, markdown, _ = cli("postmortem", "render", "INC-1")
    timeline = json.dumps(_timeline(engine), ensure_ascii=False)
    assert "node ***: pw ***" in timeline and "with node=***, password=***" in timeline
    assert "pass-along" in markdown
    # The run keeps the values it needs (``runbook_run.params``) and locks on its target
    # while it runs; nothing else stores them.
    kept = frozenset({("runbook_run", "params"), ("ledger_run", "target")})
    places = {
        "plan": plan,
        "run output": ran,
        "timeline": timeline,
        "postmortem": markdown.replace("\\", ""),
        "database rows": raw_rows(engine, kept),
    }
    assert leaks(places, [("secret param", SECRET_VALUE)]) == []


def test_action_items_and_postmortem_sections_are_stored_masked(cli, engine):
    """Every corpus secret typed into an action item or a postmortem section: masked before it
    is stored, so no row, report or export can show it."""
    assert cli("incident", "declare", "RPC p99 above 2s")[0] == 0
    for n, (_what, secret_text, _secret) in enumerate(SECRETS):
        code, _, err = cli("actions", "add", "INC-1", f"rotate {n}: {secret_text}")
        assert code == 0, err
    everything = "\n".join(secret_text for _, secret_text, _ in SECRETS)
    for section in ("what_went_wrong", "contributing_factors"):
        code, _, err = cli("postmortem", "edit", "INC-1", "-s", section, "-t", everything)
        assert code == 0, err
    # A command line that is refused quotes what was typed: masked there too.
    code, _, err = cli("postmortem", "edit", "INC-1", "extra", everything)
    assert code == 2 and "unexpected extra argument" in err
    assert leaks({"stderr": err}) == []
    with engine.connect() as conn:
        items = [r[0] for r in conn.execute(text("SELECT text FROM action_item"))]
        sections = [str(r[0]) for r in conn.execute(text("SELECT sections FROM postmortem"))]
    assert len(items) == len(SECRETS)
    assert leaks({"action items": "\n".join(items), "postmortem": "\n".join(sections)}) == []
