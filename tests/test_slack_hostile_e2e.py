"""Hostile text through every path into Slack: nothing typed or alert-sent becomes markup.

A whole incident is run through the local Slack server with the hostile corpus in the title,
notes, updates, role commands, the resolve summary, a runbook's message, an action item and an
Alertmanager alert. Then every call the server recorded (and every answer the bot gave
directly) is scanned: the only markup left is what the bot built itself.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import httpx

from incidentbot.sandbox.slack.server import SlackSandbox
from tests.hostile_corpus import ALL_IN_ONE, LIVE_TOKEN, NO_USER_MENTION, SPECIAL, TITLE
from tests.slack_harness import channel_of, incident, running_bot, settled, wait_for
from tests.test_alerts_support import RULES, TOKEN, alert, notification

ANNOUNCE = Path(__file__).resolve().parent.parent / "runbooks" / "announce.yaml"
# Date tokens the bot builds: a timestamp, a format, and a fallback it wrote itself.
# The links the bot itself builds to where an alert came from (its graph, Alertmanager): the
# URL is the alert's own, http(s) only and escaped, the label is the bot's.
BOT_SOURCE_LINK = re.compile(r"<https?://[^|<>\s]+\|(?:graph|Alertmanager)>")
BOT_DATE = re.compile(r"<!date\^\d+\^\{[a-z_]+\}(?: \{time\})?\|[0-9:\- ]+(?: UTC)?>")


def texts(value: Any) -> list[str]:
    """Every string inside a request's arguments or a message body (JSON strings decoded)."""
    if isinstance(value, str):
        if value[:1] in "[{":
            try:
                return texts(json.loads(value))
            except ValueError:
                pass
        return [value]
    if isinstance(value, dict):
        if value.get("type") == "plain_text":
            return []  # Slack does not parse plain text (headers, buttons) for markup
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def live_markup(text: str, allowed: set[str]) -> list[str]:
    """The markup tokens in ``text`` that the bot did not build."""
    found = []
    for m in LIVE_TOKEN.finditer(text):
        token = m.group(0)
        if token in allowed or BOT_DATE.fullmatch(token) or BOT_SOURCE_LINK.fullmatch(token):
            continue
        found.append(token)
    found += [s for s in SPECIAL if s in text and not any(s in a for a in allowed)]
    return found


def assert_no_typed_markup(
    slack: SlackSandbox, answers: list[Any], allowed: set[str]
) -> list[tuple[str, str]]:
    """Scan every Web API call the server recorded, every response_url post, every ephemeral
    message and every direct answer; return the (where, text) pairs scanned."""
    surfaces: list[tuple[str, str]] = []
    for req in slack.requests():
        surfaces += [(req.method, t) for t in texts(req.args)]
    surfaces += [("response_url", t) for p in slack.response_posts() for t in texts(p.body)]
    surfaces += [("ephemeral", t) for e in slack.ephemeral() for t in texts([e.text, e.blocks])]
    surfaces += [("answer", t) for a in answers for t in texts(a)]
    leaks = [(where, tok, t[:120]) for where, t in surfaces for tok in live_markup(t, allowed)]
    assert not leaks, "\n".join(sorted({f"{where}: {text}" for where, _, text in leaks}))
    return surfaces


def test_nothing_typed_or_alert_sent_reaches_slack_as_markup(engine, tmp_path):
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "announce.yaml").write_text(ANNOUNCE.read_text())
    settings = {
        "alertmanager_token": TOKEN,
        "alerts": {"rules": [*RULES, {"name": "hostile", "matchers": ['alertname="Hostile"']}]},
        "runbooks": {"dirs": [str(folder)]},
    }
    answers: list[Any] = []
    with running_bot(engine, **settings) as (_bot, slack):
        alice = slack.workspace.user("alice").id
        bob = slack.workspace.user("bob").id

        def say(text: str, channel: str, user: str = "alice") -> dict[str, Any]:
            ack = slack.driver.slash_command(text, user=user, channel=channel)
            assert ack.status == 200, (ack.status, ack.body)
            body = json.loads(ack.body) if ack.body else {}
            answers.append(body)
            return body

        assert "declared *INC-1*" in say(f"declare sev2 {TITLE}", "incidents")["text"]
        ch = channel_of(engine)
        say(f"note {ALL_IN_ONE}", ch)
        say(f"update {ALL_IN_ONE}", ch)
        say(f"assign scribe <@{bob}|bob>", ch)
        say(f"assign {ALL_IN_ONE}", ch)  # refused: the refusal quotes what was typed
        added = say(f"action add {NO_USER_MENTION} <@{bob}>", ch)["text"]
        assert "added action item *#1*" in added, added
        say("action list", ch)
        started = say(f'run announce message="{ALL_IN_ONE}"', ch)["text"]
        assert "Started announce" in started, started
        settled(engine)
        announced = [m.text for m in slack.snapshot(ch).messages if m.text.startswith(":mega:")]
        assert len(announced) == 1 and html.unescape(announced[0]).endswith(ALL_IN_ONE)
        say("timeline", ch)
        say("summary", ch)
        say("list", "incidents")
        say(f"resolve {ALL_IN_ONE}", ch)
        say(f"frobnicate {ALL_IN_ONE}", ch)  # an unknown subcommand, echoed back

        base = slack.driver.bot_url.removesuffix("/slack/events")
        hostile = alert(
            "Hostile",
            instance=ALL_IN_ONE[:200],
            annotations={"summary": ALL_IN_ONE, "description": ALL_IN_ONE},
        )
        got = httpx.post(
            f"{base}/webhooks/alertmanager",
            json=notification([hostile], group="Hostile"),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert got.status_code == 200, got.text
        ch2 = channel_of(engine, "INC-2")
        say("alerts", ch2)
        settled(engine)

        inc1, inc2 = incident(engine), incident(engine, "INC-2")
        assert "<!channel>" in inc1.title  # stored as typed: only Slack's rendering escapes
        allowed = {
            f"<@{alice}>",
            f"<@{bob}>",
            f"<#{inc1.channel_id}>",
            f"<#{inc2.channel_id}>",
        }
        surfaces = assert_no_typed_markup(slack, answers, allowed)
        shown = "\n".join(t for _, t in surfaces)
        assert "&lt;!channel&gt;" in shown and "AT&amp;T &amp;amp; co" in shown

        # People still read what was typed: the sandbox shows the characters (Slack decodes
        # the entities when it displays them), never "@channel" or "@ceo" as a live mention.
        digest = slack.snapshot("incidents").messages
        line = next(m.text for m in digest if "*INC-1*" in m.text)
        assert "&lt;!channel&gt;" in line and html.unescape(line).count(TITLE) == 1
        for name in ("incidents", ch, ch2):
            lines = "\n".join(slack.snapshot(name).texts()).splitlines()
            # Header blocks are plain text, which Slack never reads as markup (the sandbox's
            # transcript still turns their text into words): they stay as typed.
            shown = "\n".join(x for x in lines if not x.startswith("## "))
            for word in ("@channel", "@here", "@everyone", "@ceo", "@status page", "#general"):
                assert word not in shown, (name, word)


def test_the_declare_form_shows_a_hostile_title_and_description_as_typed(engine):
    with running_bot(engine) as (_bot, slack):
        alice = slack.workspace.user("alice").id
        ack = slack.driver.slash_command("declare", user="alice", channel="incidents")
        assert ack.status == 200
        view = wait_for(
            lambda: [v for v in slack.workspace.views.values() if v.is_open], what="the form"
        )[0]
        inputs = {
            "commander": alice,
            "title": TITLE,
            "severity": "SEV2",
            "description": ALL_IN_ONE,
            "field_chain": "ethereum",
            "field_network": "holesky",
        }
        assert slack.driver.view_submission(view.id, inputs).status == 200
        ch = channel_of(engine)
        settled(engine)
        inc = incident(engine)
        assert (inc.title, inc.description) == (TITLE, ALL_IN_ONE)
        allowed = {f"<@{alice}>", f"<#{inc.channel_id}>"}
        assert_no_typed_markup(slack, [json.loads(ack.body)], allowed)
        header = html.unescape(slack.snapshot(ch).pinned[0].text)
        assert ALL_IN_ONE in header  # the description reads as typed
