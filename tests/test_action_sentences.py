"""Each built-in action says what a finished step did in one sentence (the run message in
Slack and the run page), whatever shape its stored outputs have."""

from __future__ import annotations

import pytest

from incidentbot.runbooks.actions import registry
from incidentbot.runbooks.actions.base import Action
from incidentbot.runbooks.view import describe

NAMES = registry.names()
ODD_VALUES = (None, "", "text", 0, -3, 2.5, True, [], ["a"], {}, {"a": "b"})


@pytest.mark.parametrize("name", NAMES)
def test_every_builtin_action_has_its_own_sentence(name):
    action = registry.get(name)
    assert type(action).describe is not Action.describe, f"{name} has no describe()"


@pytest.mark.parametrize("name", NAMES)
def test_a_sentence_never_fails_on_odd_outputs(name):
    action = registry.get(name)
    outputs = dict.fromkeys(action.outputs, None)
    for odd in ODD_VALUES:
        for key in [*action.outputs, "extra"]:
            said = action.describe({**outputs, key: odd})
            assert isinstance(said, str) and said.strip(), (name, key, odd)
            assert "\n" not in said, (name, key, odd)
    assert action.describe({}).strip()


def test_sentences_people_read():
    route = {
        "server": "node-2",
        "previous": {"node-1": "UP", "node-2": "UP", "node-3": "UP"},
        "states": {"node-2": "UP", "node-1": "DRAIN", "node-3": "DRAIN"},
        "changed": ["node-1", "node-3"],
    }
    assert (
        describe("haproxy.route_to", route) == "Traffic moved to node-2; node-1 and node-3 drained"
    )
    heads = {"nodes": {"node-1": {}, "node-2": {}, "node-3": {}}, "healthy": ["node-2", "node-3"],
             "best": "node-2", "best_head": 1042}  # fmt: skip
    assert describe("rpc.heads", heads) == "2 of 3 nodes healthy; best is node-2 at block 1042"
    assert describe("shell.exec", {"exit_code": 0, "stdout": "ok"}) == "The command exited 0"
    assert describe("shell.exec", {"exit_code": -9}) == "The command was killed by signal 9"
    state = {"program": "geth", "state": "RUNNING", "pid": 4242, "changed": True}
    assert describe("supervisor.restart", state) == "geth restarted: running (pid 4242)"
    assert describe("supervisor.start", {**state, "changed": False}) == "geth already was running"
    # An action a pack brings without a sentence: its short outputs; an unknown one: the JSON.
    assert (
        Action().describe({"peers": 12, "ok": True, "blob": "x" * 80}) == "Done (peers 12, ok true)"
    )
    assert describe("acme.unknown", {"a": 1}) == '{"a": 1}'


def test_validator_sentences_people_read():
    liveness = {"epoch": 12, "live": [5], "not_live": [6, 7], "all_live": False}
    assert describe("beacon.liveness", liveness) == (
        "1 of 3 validators seen live in epoch 12; not live: 6 and 7"
    )
    head = {"head_slot": 1040, "lag_slots": 2, "finalized_epoch": 30, "finality_delay": 2}
    assert describe("beacon.head", head) == (
        "Head at slot 1040, 2 slots behind the clock; finalized epoch 30 (2 epochs ago)"
    )
    duties = {"epoch": 12, "attester": [{}, {}], "proposer": [{"index": 6, "slot": 390}]}
    assert describe("beacon.duties", duties) == (
        "Epoch 12: 2 attestation duties; proposal due at slot 390"
    )
    missed = [{"index": 7, "slot": 391}, {"index": 7, "slot": 395}]
    performance = {"epoch": 12, "attested": [6], "missed_attestations": [7],
                   "proposed": [{"index": 6, "slot": 390}], "missed_proposals": missed}  # fmt: skip
    assert describe("beacon.performance", performance) == (
        "Epoch 12: 1 of 2 validators attested (missed: 7); 1 block proposed, "
        "missed at slots 391 and 395"
    )
    stop = {"program": "validator-a", "pid_before": 4242, "epochs_checked": [13]}
    assert describe("validator.stop", stop) == (
        "validator-a stopped (was pid 4242); its keys not live for 1 epoch (13)"
    )
    start = {"program": "validator-b", "pid": 4300, "state": "RUNNING", "doppelganger": True,
             "live_epoch": 20}  # fmt: skip
    assert describe("validator.start", start) == (
        "validator-b started: running (pid 4300), with doppelgänger protection; "
        "its keys live in epoch 20"
    )
    export = {"file": "/srv/slashing/a.json", "keys": 3, "sha256": "ab" * 32, "dropped": []}
    assert describe("validator.protection_export", export) == (
        "Slashing protection of 3 keys exported to a.json"
    )
    checked = [{"pubkey": "0xa1b2…c3d4", "covered": False}, {"pubkey": "0xe5f6…0789"}]
    assert describe("validator.protection_verify", {"covered": False, "checked": checked}) == (
        "The target does not cover keys 0xa1b2…c3d4"
    )
    assert describe("validator.protection_verify", {"covered": True, "keys": 3}) == (
        "The target covers the history of all 3 keys of the source"
    )
