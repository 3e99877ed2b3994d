"""Secrets never reach Slack, the logs, the timeline, the stored run or any other row: a
runbook whose endpoint answers with every secret shape of the corpus, run from Slack end to end,
with its secret token also given to a param that is not secret."""

from __future__ import annotations

import io
import json
import logging
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import select

from incidentbot import db, ledger
from incidentbot.incidents import service as svc
from incidentbot.ledger.models import Step
from incidentbot.logs import RedactingFilter
from tests.egress_support import LOOPBACK
from tests.secret_corpus import INFURA_KEY, LOOKALIKES, SECRETS, leaks
from tests.slack_harness import channel_of, running_bot, wait_for
from tests.test_redaction_surfaces import raw_rows
from tests.test_runbook_e2e import reply, runbook_run, status

TOKEN = "tok-Zq81vPx3Lw0Rk7Ny2Ud5"  # a secret param of no recognisable shape
CORPUS = "\n".join(text for _, text, _ in SECRETS)
READABLE = "\n".join(text for _, text in LOOKALIKES)

LEAKY = """
name: leaky
description: Ask a provider that answers with secrets
params:
  rpc_url: {type: string, secret: true}
  token: {type: string, secret: true}
  comment: {type: string}
steps:
  - id: fetch
    uses: http.request
    idempotent: true
    with:
      method: POST
      url: "{{ params.rpc_url }}"
      headers: {Authorization: "Bearer {{ params.token }}"}
      json: {id: 1}
  - id: tell
    uses: slack.post
    with: {text: "provider said: {{ steps.fetch.outputs.body }} (token {{ params.token }})"}
  - id: note
    uses: incident.note
    with: {text: "asked {{ params.rpc_url }}: {{ steps.fetch.outputs.body }}"}
  - id: fetch_readable
    uses: http.request
    idempotent: true
    with: {method: POST, url: "{{ params.rpc_url }}?readable=1", json: {id: 2}}
  - id: note_readable
    uses: incident.note
    with: {text: "and then: {{ steps.fetch_readable.outputs.body }}"}
  - id: fail
    uses: http.request
    with: {method: GET, url: "{{ params.rpc_url }}/fail?token={{ params.token }}"}
"""


class Provider:
    """Answers POST with the whole corpus (or the look-alikes), GET with a 400."""

    def __init__(self) -> None:
        provider = self
        self.seen_auth: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if "readable" in self.path:  # a note holds at most 4000 characters
                    self._send(200, READABLE)
                    return
                provider.seen_auth.append(self.headers.get("Authorization", ""))
                self._send(200, CORPUS)

            def do_GET(self) -> None:
                self._send(400, f"bad request for key {INFURA_KEY}")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v3/{INFURA_KEY}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def provider():
    p = Provider()
    yield p
    p.stop()


@pytest.fixture
def logged():
    """Everything logged while the test runs, through the product's redacting filter."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)


def test_no_secret_reaches_slack_logs_timeline_or_the_stored_run(
    engine, tmp_path, provider, logged
):
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "leaky.yaml").write_text(textwrap.dedent(LEAKY))
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (
        _bot,
        slack,
    ):
        reply(slack.driver.slash_command("declare sev2 Provider errors", user="alice"))
        ch = channel_of(engine)
        text = f"run leaky rpc_url={provider.url} token={TOKEN} comment=same-as-{TOKEN}"
        reply(slack.driver.slash_command(text, user="alice", channel=ch))
        rid = wait_for(lambda: runbook_run(engine), what="the run").run_id
        wait_for(lambda: status(engine, rid) == "failed", what="the run to fail at its last step")
        with db.transaction(engine) as s:
            error = ledger.get_run(s, rid).error
        assert "'fail' failed: GET ***/fail?token=*** answered 400" in (error or ""), error
        assert provider.seen_auth == [f"Bearer {TOKEN}"]  # the action got the real values

        def settled_message():
            return "failed" in slack.transcript(ch) and "provider said" in slack.transcript(ch)

        wait_for(settled_message, what="the run message and the post")
        shown = slack.transcript() + "\n".join(e.text for e in slack.ephemeral())
        calls = json.dumps([c.args for c in slack.requests()], ensure_ascii=False)
        with db.transaction(engine) as s:
            events = svc.timeline(s, svc.get(s, "INC-1"))
            timeline = "\n".join(e.summary + json.dumps(e.data) for e in events)
            steps = s.exec(select(Step).where(Step.run_id == rid)).all()
            stored = json.dumps([[st.input, st.output, st.error] for st in steps])
            stored += ledger.get_run(s, rid).error or ""
    places = {
        "Slack": shown,
        "Slack calls": calls,
        "timeline": timeline,
        "stored run": stored,
        "logs": logged.getvalue(),
        # the run keeps the param values it needs in runbook_run.params, and nowhere else
        "database rows": raw_rows(engine, frozenset({("runbook_run", "params")})),
    }
    assert leaks(places, [("token param", TOKEN)]) == []
    assert "comment=same-as-***" in shown
    # and it was all there to leak: the output and the failure made it through, masked
    assert "provider said:" in shown and "400 Bad Request" in timeline
    assert "***" in shown and "***" in timeline
    # look-alikes (block hashes, addresses, …) stay readable where people read them
    unreadable = [what for what, text in LOOKALIKES if text not in timeline]
    assert unreadable == []
