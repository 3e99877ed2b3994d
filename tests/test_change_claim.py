"""The changes typed in an incident's channel (severity, status, a field, roles, a milestone, an
update, a page, resolve, close, reopen) are claimed in their own transaction, as a declare and a
note are (see test_declare_claim.py, test_note_claim.py): the claim and the change commit
together, Slack's retry of a change gets the first answer and changes nothing, and a change
refused in its transaction leaves nothing claimed, so a retry once it can be done does it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import event, text
from sqlmodel import select

from incidentbot import db, inbound
from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.errors import NotFound
from incidentbot.incidents import service as svc
from incidentbot.usecases import incidents as uc
from incidentbot.usecases.core import Actor, Core
from tests.test_declare_claim import held_bot, idle_bot, signed, stored

RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
PAGERDUTY = {
    "services": {"rpc": {"service_id": "PRPC001"}},
    "default_service": "rpc",
    "from_email": "oncall@example.org",
}


def paging_bot(engine, sandbox) -> Bot:
    """The bot wired to ``sandbox`` with a PagerDuty service to page, its one worker polling
    once a minute: what a request writes is counted before any run of it is worked."""
    settings = Settings(
        slack_bot_token=sandbox.bot_token,
        slack_signing_secret=sandbox.signing_secret,
        slack={"api_url": sandbox.base_url},
        pagerduty=PAGERDUTY,
        pagerduty_api_token="pd-token-not-used",  # the runs are not worked here
        workers=1,
    )
    return Bot.build(settings, engine, poll=60)


def open_incident(engine, sandbox) -> None:
    """INC-1, SEV2, in the sandbox's #incidents channel."""
    channel = sandbox.workspace.channel("incidents")
    with db.transaction(engine) as s:
        inc = svc.declare(s, Settings(), title="Sequencer stalled", severity="SEV2", actor="U1")
        inc.channel_id, inc.channel_name = channel.id, channel.name
        s.add(inc)


def written(engine) -> dict[str, int]:
    """What the requests changed: timeline entries, queued runs, claims, pages."""
    tables = ("timeline_event", "ledger_run", "inbound_request", "page")
    return {t: stored(engine, t) for t in tables}


def kinds(engine) -> Counter[str]:
    """INC-1's timeline entries by kind."""
    with db.read(engine) as s:
        return Counter(str(r[0]) for r in s.execute(text("SELECT kind FROM timeline_event")))


def incident(engine):  # type: ignore[no-untyped-def]
    with db.read(engine) as s:
        return svc.get(s, "INC-1")


def test_each_change_is_claimed_with_it_and_a_retry_gets_its_answer(engine, slack_sandbox):
    sandbox = slack_sandbox
    open_incident(engine, sandbox)
    bob = sandbox.workspace.user("bob").id
    changes = [
        ("sev 1", "changed severity SEV2 → *SEV1*"),
        ("status investigating", "changed status triage → *investigating*"),
        ("field chain ethereum", "set *Chain* to `ethereum`"),
        (f"assign scribe <@{bob}>", f"assigned <@{bob}> as *Scribe*"),
        ("unassign scribe", "unassigned the scribe"),
        ("milestone detected 5m ago", "set *detected* to"),
        ("update RPC nodes restarted", "Posting your update here"),
        ("page rpc", "is paging *rpc* on-call"),
        ("resolve restarted the sequencer", "resolved *INC-1*"),
        ("close", "closed *INC-1*"),
        ("reopen", "reopened *INC-1*"),
    ]
    bot = paging_bot(engine, sandbox)
    seen: list[str] = []

    def statement(_conn, _cursor, sql: str, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(" ".join(sql.split()).upper())

    try:
        url = sandbox.driver.bot_url = bot.start_http() + "/slack/events"
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", lambda _conn: seen.append("COMMIT"))
        for typed, told in changes:
            request = sandbox.driver.slash_command_request(typed, user="alice")
            before = written(engine)
            seen.clear()
            first = httpx.post(url, content=request.body, headers=signed(sandbox, request.body),
                               timeout=30)  # fmt: skip
            claims = [i for i, q in enumerate(seen) if "INSERT INTO INBOUND_REQUEST " in q]
            changed = [i for i, q in enumerate(seen) if "INSERT INTO TIMELINE_EVENT " in q]
            after = written(engine)
            state = incident(engine)
            again = httpx.post(url, content=request.body,
                               headers=signed(sandbox, request.body, **RETRY),
                               timeout=30)  # fmt: skip
            assert first.status_code == again.status_code == 200, (typed, again.text)
            assert told in first.json()["text"], (typed, first.text)
            assert again.text == first.text, typed  # the first answer, not a second change
            assert after["timeline_event"] > before["timeline_event"], typed
            assert after["inbound_request"] == before["inbound_request"] + 1, typed
            # The retry changed nothing, not even the incident's last update.
            assert written(engine) == after, typed
            assert incident(engine).updated_at == state.updated_at, typed
            # One claim, the first statement of the change's transaction (after the read of
            # the channel's incident, which commits before it).
            assert len(claims) == 1 and claims[0] < changed[0], (typed, seen)
            assert "COMMIT" not in seen[claims[0] : changed[0]], (typed, seen)
            before_claim = seen[seen.index("COMMIT") + 1 : claims[0]]
            assert all(q.startswith(("BEGIN", "SAVEPOINT")) for q in before_claim), (typed, seen)
            if engine.dialect.name == "postgresql":
                # Not a round trip of its own: the statement that reads the incident claims it.
                claim = seen[claims[0]]
                assert claim.startswith("WITH INBOUND_CLAIM AS (INSERT INTO INBOUND_REQUEST ")
                assert " FROM INCIDENT WHERE INCIDENT.NUMBER = " in claim, (typed, claim)
    finally:
        bot.stop()
    inc = incident(engine)
    assert (inc.severity, inc.status, inc.fields.get("chain")) == (
        "SEV1",
        "investigating",
        "ethereum",
    )


def test_a_change_refused_in_its_transaction_is_done_by_slacks_retry_once_it_can_be(
    engine, slack_sandbox
):
    """Refused where it was typed (the incident is open, or closed), each change is rolled back
    with its claim: nothing of it is stored, not even its answer. Once the incident is in a
    state the change fits, Slack's retry of the same request does it, instead of repeating the
    first refusal."""
    sandbox = slack_sandbox
    open_incident(engine, sandbox)
    bob = sandbox.workspace.user("bob").id
    bot = paging_bot(engine, sandbox)
    # (typed, refused while the incident is closed, done once it is open again)
    refused_closed = [
        ("sev 1", "is closed", "changed severity SEV2 → *SEV1*"),
        ("status identified", "closed", "→ *identified*"),
        ("field chain ethereum", "closed", "set *Chain* to `ethereum`"),
        (f"assign scribe <@{bob}>", "closed", f"assigned <@{bob}> as *Scribe*"),
        ("milestone detected 5m ago", "is closed", "set *detected* to"),
        ("resolve restarted the sequencer", "already closed", "resolved *INC-1*"),
        ("close", "already closed", "closed *INC-1*"),
    ]
    try:
        url = sandbox.driver.bot_url = bot.start_http() + "/slack/events"

        def send(request, **extra: str) -> str:  # type: ignore[no-untyped-def]
            answer = httpx.post(url, content=request.body,
                                headers=signed(sandbox, request.body, **extra),
                                timeout=30)  # fmt: skip
            assert answer.status_code == 200, answer.text
            return str(answer.json()["text"])

        # Refused while the incident is open: nothing to reopen, no scribe to unassign.
        reopen = sandbox.driver.slash_command_request("reopen", user="alice")
        unassign = sandbox.driver.slash_command_request("unassign ops_lead", user="alice")
        before = written(engine)
        assert "not resolved or closed" in send(reopen)
        assert "ops" in send(unassign).lower()
        assert written(engine) == before  # nothing claimed, nothing changed

        with db.transaction(engine) as s:
            svc.resolve(s, Settings(), "INC-1", "fixed by hand", actor="U1")
            svc.close(s, Settings(), "INC-1", actor="U1")
        requests = [
            sandbox.driver.slash_command_request(t, user="alice") for t, *_ in refused_closed
        ]
        before = written(engine)
        for (typed, why, _), request in zip(refused_closed, requests, strict=True):
            assert why in send(request), typed
        assert written(engine) == before  # nothing claimed, nothing changed

        with db.transaction(engine) as s:  # open again: each change now fits
            svc.reopen(s, Settings(), "INC-1", actor="U1")
            svc.assign_role(s, Settings(), "INC-1", "ops_lead", bob, actor="U1")
        claims = stored(engine, "inbound_request")
        for (typed, _, done), request in zip(refused_closed, requests, strict=True):
            assert done in send(request, **RETRY), typed
        assert "unassigned the ops lead" in send(unassign, **RETRY)
        assert "reopened *INC-1*" in send(reopen, **RETRY)
    finally:
        bot.stop()
    assert stored(engine, "inbound_request") == claims + len(refused_closed) + 2
    inc = incident(engine)
    assert (inc.severity, inc.status, inc.fields.get("chain")) == (
        "SEV1",
        "investigating",
        "ethereum",
    )
    assert inc.detected_at is not None


def test_a_change_killed_before_its_answer_is_not_run_again_by_slacks_retry(
    engine, database_url, slack_sandbox
):
    """The bot dies after the change and its claim committed, before its answer was sent.
    Slack's retry, served by a new process, gets an empty acknowledgement and changes nothing,
    even once the claim is old enough for a dead request's claim to be taken over: a status
    update run twice would be posted twice."""
    typed, kind = "update validators caught up", "status.update"
    sandbox = slack_sandbox
    open_incident(engine, sandbox)
    with held_bot("tests.change_claim_child", database_url, sandbox) as held:
        request = sandbox.driver.slash_command_request(typed, user="alice")
        before = kinds(engine).get(kind, 0)
        held.send(request.body, until="answering")
        # Committed: the change and its claim, together.
        assert kinds(engine).get(kind, 0) == before + 1
        assert stored(engine, "inbound_request") == 1
        held.kill()
    after = written(engine)
    bot = idle_bot(engine, sandbox)
    try:
        url = bot.start_http() + "/slack/events"

        def retry() -> httpx.Response:
            headers = signed(sandbox, request.body, **RETRY)
            return httpx.post(url, content=request.body, headers=headers, timeout=30)

        answers = [retry()]
        with db.transaction(engine) as s:  # long past the takeover of a dead request's claim
            [claim] = s.exec(select(inbound.InboundRequest)).all()
            claim.claimed_at -= inbound.TAKEOVER + timedelta(minutes=1)
            s.add(claim)
        answers.append(retry())
    finally:
        bot.stop()
    assert [(a.status_code, a.text) for a in answers] == [(200, ""), (200, "")]
    assert written(engine) == after  # not run again
    assert kinds(engine).get(kind, 0) == before + 1


def test_a_change_claims_with_its_incidents_read_or_is_refused_with_nothing_claimed(
    engine, settings
):
    """The read of the incident a change names claims its request (on PostgreSQL in the same
    statement): a change to no incident is refused and leaves no claim, so its retry is run
    again; a replayed change stops at its claim and changes nothing; a change read with its row
    locked (a field) claims as well."""
    core = Core(settings, engine, chat=False)
    alice = Actor("U0ALICE", "slack")
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="Sequencer stalled", severity="SEV2", actor="U1")
    with pytest.raises(NotFound), inbound.deferred("slack:trigger:T1") as missing:
        uc.set_severity(core, alice, "INC-9", "SEV1")
    assert missing.undone and not missing.claimed and stored(engine, "inbound_request") == 0

    with inbound.deferred("slack:trigger:T2") as first:
        uc.set_severity(core, alice, "INC-1", "SEV1")
    with pytest.raises(inbound.Taken), inbound.deferred("slack:trigger:T2") as replay:
        uc.set_severity(core, alice, "INC-1", "SEV3")
    assert first.claimed and replay.taken and not replay.claimed
    with pytest.raises(NotFound), inbound.deferred("slack:trigger:T3") as locked_missing:
        uc.set_field(core, alice, "INC-9", "chain", "ethereum")
    with inbound.deferred("slack:trigger:T4") as locked:
        uc.set_field(core, alice, "INC-1", "chain", "ethereum")
    assert locked_missing.undone and locked.claimed
    inc = incident(engine)
    assert (inc.severity, inc.fields.get("chain")) == ("SEV1", "ethereum")
    assert kinds(engine)["severity.changed"] == 1
    with db.read(engine) as s:
        keys = s.execute(text("SELECT key FROM inbound_request ORDER BY key")).scalars()
        assert list(keys) == ["slack:trigger:T2", "slack:trigger:T4"]
