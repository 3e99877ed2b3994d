"""Exporting action items as GitHub issues, against a local server that answers as GitHub does
(tests/github_responder.py): the request it checks, the answers it gives, and what failures
leave behind (nothing)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import date, timedelta

import pytest

from incidentbot import db
from incidentbot.action_items import github
from incidentbot.action_items import service as items
from incidentbot.clock import utcnow
from incidentbot.config import ConfigError, Settings, load_settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from tests.conftest import count
from tests.github_responder import API_VERSION, github_responder
from tests.ledger_harness import REPO as REPO_DIR
from tests.secret_corpus import SECRETS, leaks
from tests.slack_harness import channel_of, running_bot, wait_for

TOKEN = "ghp_" + "T3stT0ken" * 4  # the shape of a GitHub token; only the responder knows it
REPO = "nodeworks/infra"


@pytest.fixture
def gh():
    with github_responder(token=TOKEN, repo=REPO) as responder:
        yield responder


def _settings(gh, **overrides) -> Settings:
    section = {
        "github_repo": REPO,
        "github_api_url": gh.url,
        "labels": ["follow-up", "p:{priority}"],
    }
    section |= overrides.pop("action_items", {})
    return Settings(github_token=overrides.pop("token", TOKEN), action_items=section, **overrides)


def _incident_with_item(engine, text="Rotate the RPC API keys", **kw):
    st = Settings()
    with db.transaction(engine) as s:
        svc.declare(s, st, title="RPC p99 latency above 2s", severity="SEV2", actor="alice")
        return items.add(s, st, "INC-1", text, actor="alice", **kw).id


def _state(engine, item_id):
    with db.transaction(engine) as s:
        item = items.get(s, item_id)
        exported = [e for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "action.exported"]
        return item.external_url, len(exported)


def test_export_opens_one_issue_and_remembers_it(engine, gh):
    item_id = _incident_with_item(engine, owner="bob", priority="high", due=date(2099, 1, 1))
    st = _settings(gh)
    result = github.export(engine, st, item_id, actor="carol")
    assert (result.created, result.url) == (True, f"https://github.com/{REPO}/issues/1")

    (request,) = gh.requests
    assert (request.method, request.path) == ("POST", f"/repos/{REPO}/issues")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-github-api-version"] == API_VERSION
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("incidentbot/")
    body = request.body
    assert set(body) == {"title", "body", "labels"}
    assert body["title"] == "Rotate the RPC API keys"
    assert body["labels"] == ["follow-up", "p:high"]
    assert "Follow-up from incident **INC-1**." in body["body"]
    assert "| Incident | INC-1 (SEV2, triage): RPC p99 latency above 2s |" in body["body"]
    assert "| Priority | high |" in body["body"] and "| Due | 2099-01-01 |" in body["body"]
    assert "| Owner | bob |" in body["body"]
    assert f"incidentbot actions done {item_id}" in body["body"]

    assert _state(engine, item_id) == (result.url, 1)
    with db.transaction(engine) as s:
        (event,) = [e for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "action.exported"]
    assert event.actor == "carol"
    assert event.data == {"item": item_id, "url": result.url, "issue": 1, "repo": REPO}

    again = github.export(engine, st, item_id, actor="dave")
    assert (again.created, again.url) == (False, result.url)
    assert len(gh.requests) == 1  # no second issue, not even a second request
    assert _state(engine, item_id) == (result.url, 1)


def test_what_leaves_for_github_is_redacted(engine, gh):
    secret = "ghp_" + "A1b2C3d4E5" * 4
    item_id = _incident_with_item(engine, text=f"revoke the leaked token {secret} on the CI runner")
    github.export(engine, _settings(gh), item_id, actor="carol")
    sent = json.dumps(gh.requests[0].body)
    assert secret not in sent and "revoke the leaked token" in sent
    # and every secret of the corpus, each in an item of its own
    st = Settings()
    with db.transaction(engine) as s:
        ids = [items.add(s, st, "INC-1", text, actor="alice").id for _, text, _ in SECRETS]
    for each in ids:
        github.export(engine, _settings(gh), each, actor="carol")
    bodies = [r.body for r in gh.requests[1:] if r.body]
    assert len(bodies) == len(SECRETS)
    assert leaks({"GitHub issues": json.dumps(bodies, ensure_ascii=False)}) == []
    assert all("***" in body["body"] for body in bodies)


def test_long_texts_are_cut_to_githubs_title_limit(engine, gh):
    item_id = _incident_with_item(engine, text="check the peers " * 40)
    github.export(engine, _settings(gh), item_id, actor="carol")
    title = gh.requests[0].body["title"]
    assert len(title) == 256 and title.endswith("…")
    assert ("check the peers " * 40).strip() in gh.requests[0].body["body"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            {"token": "ghp_wrong"},
            "GitHub refused the token (401 Bad credentials): check INCIDENTBOT_GITHUB_TOKEN; "
            "nothing changed",
        ),
        (
            {"action_items": {"github_repo": "nodeworks/no-such-repo"}},
            "GitHub has no repository nodeworks/no-such-repo that this token can see "
            "(404 Not Found): check action_items.github_repo",
        ),
        (
            {"fault": (422, {"message": "Validation Failed", "errors": [
                {"resource": "Issue", "code": "invalid", "field": "labels",
                 "message": "label p:high does not exist"}]})},
            "GitHub refused the issue (422 Validation Failed: label p:high does not exist); "
            "nothing changed",
        ),
        (
            {"fault": (500, {"message": "Server Error"})},
            "GitHub failed (500 Server Error); nothing changed: try again later",
        ),
        (
            {"fault": (502, None)},
            "GitHub failed (502 Bad Gateway); nothing changed: try again later",
        ),
        (
            {"fault": (503, {"message": "Service Unavailable"})},
            "GitHub failed (503 Service Unavailable); nothing changed: try again later",
        ),
        (
            {"fault": (403, {"message": "Resource not accessible by personal access token"})},
            "GitHub refused to create an issue in nodeworks/infra (403 Resource not accessible "
            "by personal access token): the token needs permission to write issues there",
        ),
        (
            {"fault": (403, {"message": "API rate limit exceeded"}),
             "headers": {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1773144000"}},
            "GitHub's rate limit is reached until 12:00 UTC (403 API rate limit exceeded)",
        ),
        (
            {"fault": (201, {"message": "not an issue"})},
            "GitHub answered 201 without an issue number and URL",
        ),
    ],
    ids=["401", "404", "422", "500", "502", "503", "403", "rate-limit", "bad-201"],
)  # fmt: skip
def test_github_errors_say_what_to_do_and_change_nothing(engine, gh, setup, message):
    item_id = _incident_with_item(engine, priority="high")
    setup = dict(setup)
    fault = setup.pop("fault", None)
    headers = setup.pop("headers", {})
    if fault:
        gh.fail_next(fault[0], fault[1], **headers)
    before = count(engine, "timeline_event")
    with pytest.raises(github.ExportError) as exc:
        github.export(engine, _settings(gh, **setup), item_id, actor="carol")
    assert str(exc.value).startswith(message), str(exc.value)
    assert len(gh.requests) == 1  # one try: no retries behind the user's back
    assert _state(engine, item_id) == (None, 0)
    assert count(engine, "timeline_event") == before
    # The next export, with the fault gone, works (nothing was left half done).
    if fault:
        assert github.export(engine, _settings(gh, **setup), item_id, actor="carol").created


def test_no_answer_in_time_says_the_issue_may_exist(engine, gh):
    item_id = _incident_with_item(engine)
    gh.fail_next(201, None, delay=1.5)
    st = _settings(gh, action_items={"timeout": 0.3})
    with pytest.raises(github.ExportError) as exc:
        github.export(engine, st, item_id, actor="carol")
    assert str(exc.value).startswith(
        "GitHub did not answer within 0.3s, so the issue may or may not have been created: "
        f"look in {REPO}'s issues before exporting again"
    )
    assert _state(engine, item_id) == (None, 0)


def test_github_unreachable(engine):
    item_id = _incident_with_item(engine)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    st = Settings(
        github_token=TOKEN,
        action_items={"github_repo": REPO, "github_api_url": f"http://127.0.0.1:{port}"},
    )
    with pytest.raises(github.ExportError, match=r"could not reach GitHub at http://127\.0\.0\.1"):
        github.export(engine, st, item_id, actor="carol")
    assert _state(engine, item_id) == (None, 0)


def test_refused_before_asking_github(engine, gh):
    item_id = _incident_with_item(engine)
    with db.transaction(engine) as s:
        svc.declare(s, Settings(), title="Validators missing", severity="SEV3", actor="bob")
        other = items.add(s, Settings(), "INC-2", "raise the peer limit", actor="bob").id
        done_id = items.add(s, Settings(), "INC-1", "page the provider", actor="bob").id
        items.done(s, Settings(), done_id, actor="bob")
    cases = [
        (_settings(gh, action_items={"github_repo": None}), item_id,
         "exporting to GitHub is not configured: set action_items.github_repo (owner/name)"),
        (_settings(gh, token=None), item_id,
         "INCIDENTBOT_GITHUB_TOKEN is not set: exporting to GitHub needs it"),
        (_settings(gh), 404, "there is no action item #404"),
        (_settings(gh), done_id,
         f"action item #{done_id} is done: only open items are exported; reopen it first"),
    ]  # fmt: skip
    for st, target, message in cases:
        with pytest.raises(DomainError) as exc:
            github.export(engine, st, target, actor="carol")
        assert str(exc.value) == message
    with db.transaction(engine) as s:
        inc1 = svc.get(s, "INC-1")
    with pytest.raises(DomainError, match=f"action item #{other} belongs to INC-2, not INC-1"):
        github.export(engine, _settings(gh), other, actor="carol", incident=inc1)
    assert gh.requests == []


def test_two_exports_at_once_open_one_issue(engine, gh):
    item_id = _incident_with_item(engine)
    gate = gh.hold()  # GitHub answers the first export only once the others have started
    st = _settings(gh)
    results: list[github.Exported] = []

    def export() -> None:
        results.append(github.export(engine, st, item_id, actor="carol"))

    threads = [threading.Thread(target=export) for _ in range(4)]
    threads[0].start()
    assert gate.wait_for_arrivals(1), "the first export never asked GitHub"
    for t in threads[1:]:
        t.start()
    gate.open()
    for t in threads:
        t.join(60)
    assert len(gh.requests) == 1 and len(gh.issues) == 1
    assert sorted(r.created for r in results) == [False, False, False, True]
    assert len({r.url for r in results}) == 1
    assert _state(engine, item_id)[1] == 1


def test_settings_for_the_export(tmp_path, monkeypatch):
    monkeypatch.delenv("INCIDENTBOT_CONFIG", raising=False)
    path = tmp_path / "incidentbot.yaml"
    path.write_text("github_token: ghp_in_a_file\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert "github_token: secrets are not read from the config file" in str(exc.value)
    path.write_text(
        "action_items:\n  github_repo: nodeworks\n  labels: ['x-{owner}']\n"
        "  reaction: ':white check:'\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    problems = "\n".join(exc.value.problems)
    assert "action_items.github_repo: 'nodeworks' is not a GitHub repository: use owner/name" in (
        problems
    )
    assert "unknown placeholder {owner}" in problems
    assert "is not an emoji name" in problems
    monkeypatch.setenv("INCIDENTBOT_GITHUB_TOKEN", TOKEN)
    path.write_text("action_items:\n  github_repo: nodeworks/infra\n")
    st = load_settings(path)
    assert st.github_token.get_secret_value() == TOKEN
    assert (st.action_items.github_repo, st.action_items.github_api_url) == (
        "nodeworks/infra",
        "https://api.github.com",
    )


# -- from the command line and from Slack ------------------------------------------------------


def test_cli_export(cli, gh, monkeypatch):
    monkeypatch.setenv("INCIDENTBOT_GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("INCIDENTBOT_ACTION_ITEMS__GITHUB_REPO", REPO)
    monkeypatch.setenv("INCIDENTBOT_ACTION_ITEMS__GITHUB_API_URL", gh.url)
    cli("db", "upgrade")
    cli("incident", "declare", "RPC p99 latency above 2s")
    cli("actions", "add", "INC-1", "rotate", "the", "keys")
    gh.fail_next(502, None)
    code, out, err = cli("actions", "export", "1")
    assert code == 1 and err.startswith("error: GitHub failed (502 Bad Gateway); nothing changed")
    code, out, err = cli("actions", "export", "1", "--as", "carol")
    assert (code, err) == (0, "")
    assert out.strip() == f"Exported action item #1 to https://github.com/{REPO}/issues/1"
    code, out, _ = cli("actions", "export", "1", "--json")
    assert json.loads(out) == {
        "item": 1,
        "incident": "INC-1",
        "url": f"https://github.com/{REPO}/issues/1",
        "created": False,
    }
    assert len(gh.issues) == 1
    code, out, _ = cli("actions", "list", "--json")
    assert json.loads(out)[0]["external_url"] == f"https://github.com/{REPO}/issues/1"


def test_slack_export(engine, gh):
    overrides = {
        "github_token": TOKEN,
        "action_items": {"github_repo": REPO, "github_api_url": gh.url},
    }
    with running_bot(engine, **overrides) as (_bot, slack):
        slack.driver.slash_command("declare sev2 RPC p99 latency above 2s", user="alice")
        ch = channel_of(engine)

        def run(text):
            ack = slack.driver.slash_command(text, user="alice", channel=ch)
            assert ack.status == 200
            return json.loads(ack.body)

        run("action add Rotate the RPC API keys priority:urgent")
        gh.fail_next(401, {"message": "Bad credentials"})
        first = run("action export 1")
        assert first["text"] == f"Opening action item *#1* as a GitHub issue in {REPO}…"
        told = wait_for(
            lambda: [e.text for e in slack.ephemeral("alice") if "was not exported" in e.text],
            what="the failure, through the response URL",
        )
        assert told[0].startswith("Action item *#1* was not exported: GitHub refused the token")
        assert _state(engine, 1) == (None, 0)

        assert run("action export 1")["text"].startswith("Opening action item *#1*")
        url = f"https://github.com/{REPO}/issues/1"
        wait_for(
            lambda: f"exported action item *#1* to GitHub: {url}" in slack.transcript(ch),
            what="the export announced in the channel",
        )
        assert _state(engine, 1) == (url, 1)
        assert gh.requests[-1].body["labels"] == ["incident-follow-up"]
        again = run("action export 1")
        assert again["text"] == f"Action item *#1* is already on GitHub: {url}"
        assert len(gh.issues) == 1
        assert f"<{url}|issue>" in run("action list")["text"]


def _export_process(
    database_url: str, gh, item_id: int, *extra: str, on_go: bool = False
) -> subprocess.Popen:
    """``incidentbot actions export`` in a process of its own. ``on_go``: it starts (imports,
    the slow part), writes ``ready`` and exports only when the test writes a line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
    env.update(
        INCIDENTBOT_DATABASE_URL=database_url,
        INCIDENTBOT_GITHUB_TOKEN=TOKEN,
        INCIDENTBOT_ACTION_ITEMS__GITHUB_REPO=REPO,
        INCIDENTBOT_ACTION_ITEMS__GITHUB_API_URL=gh.url,
        INCIDENTBOT_ACTION_ITEMS__TIMEOUT="60",  # the most allowed: held answers stay awaited
        PYTHONPATH=str(REPO_DIR),
    )
    code = "import sys; from incidentbot.cli import main; "
    if on_go:
        code += "print('ready', flush=True); sys.stdin.readline(); "
    code += "sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "actions", "export", str(item_id), *extra],
        env=env, stdin=subprocess.PIPE if on_go else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_processes_exporting_at_once_open_one_issue(engine, database_url, gh):
    item_id = _incident_with_item(engine)
    second = _export_process(database_url, gh, item_id, on_go=True)
    assert second.stdout.readline() == "ready\n"  # started, waiting for the test's go
    gate = gh.hold()  # GitHub answers the first export only once the second one is done
    first = _export_process(database_url, gh, item_id)
    assert gate.wait_for_arrivals(1), "the first export never asked GitHub"
    assert _claimed(engine, item_id) is not None  # claimed before asking
    _, err2 = second.communicate("go\n", timeout=120)
    assert gate.waiting == 1  # the second process did not ask GitHub
    gate.open()
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert out1.strip() == f"Exported action item #{item_id} to https://github.com/{REPO}/issues/1"
    assert second.returncode == 1
    assert err2.startswith(f"error: action item #{item_id} is being exported (by ")
    assert len(gh.issues) == 1
    assert _state(engine, item_id) == (f"https://github.com/{REPO}/issues/1", 1)
    assert _claimed(engine, item_id) is None


def test_an_export_that_died_asks_for_a_look_before_exporting_again(engine, gh):
    item_id = _incident_with_item(engine)
    with db.transaction(engine) as s:  # a process died while GitHub was being asked
        item = items.get(s, item_id)
        item.export_started_at = utcnow() - timedelta(minutes=5)
        item.export_started_by = "carol"
        s.add(item)
    st = _settings(gh)
    with pytest.raises(github.ExportError) as exc:
        github.export(engine, st, item_id, actor="dave")
    assert str(exc.value) == (
        f"an export of action item #{item_id} by carol at "
        f"{_claimed(engine, item_id):%Y-%m-%d %H:%M:%S} UTC did not finish, so its issue may "
        f"exist: look in {REPO}'s issues; if there is none, export it again with "
        f"`incidentbot actions export {item_id} --again`"
    )
    assert gh.requests == []
    done = github.export(engine, st, item_id, actor="dave", again=True)
    assert done.created and len(gh.issues) == 1 and _claimed(engine, item_id) is None


def _claimed(engine, item_id):
    with db.transaction(engine) as s:
        return items.get(s, item_id).export_started_at
