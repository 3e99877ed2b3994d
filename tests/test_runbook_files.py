"""Runbook files: what a valid one becomes, every problem with its line and field, params,
and the ``incidentbot runbook`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.runbooks.actions.base import Action
from incidentbot.runbooks.definition import Runbook
from incidentbot.runbooks.loader import RunbookError, load_dirs, load_file, load_paths
from incidentbot.runbooks.params import ParamError, coerce, masked, usage
from incidentbot.runbooks.yaml_lines import Problem

ROOT = Path(__file__).resolve().parents[1]


# A small action registry, shaped like the real one.


class _HttpInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: Literal["GET", "POST"] = "GET"
    url: str
    json_body: Any = Field(default=None, alias="json")
    timeout: float = Field(default=10.0, gt=0)
    expect_status: list[int] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class _Http(Action):
    name = "http.request"
    idempotent = False
    Inputs = _HttpInputs
    outputs: ClassVar[dict[str, str]] = {"status": "HTTP status", "json": "the body as JSON"}


class _NoteInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class _Note(Action):
    name = "incident.note"
    idempotent = True
    Inputs = _NoteInputs
    outputs: ClassVar[dict[str, str]] = {"event_id": "the timeline event"}


class _SleepInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0)


class _Sleep(Action):
    name = "wait.sleep"
    idempotent = True
    Inputs = _SleepInputs


class _Registry:
    def __init__(self, *actions: type[Action]):
        self._actions = {a.name: a() for a in actions}

    def get(self, name: str) -> Action | None:
        return self._actions.get(name)

    def names(self) -> list[str]:
        return sorted(self._actions)


REGISTRY = _Registry(_Http, _Note, _Sleep)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    """``LINE: field: message`` of every problem of a file holding ``text``."""
    path = write(tmp_path, "rb.yaml", text)
    with pytest.raises(RunbookError) as info:
        load_file(path, REGISTRY)
    assert all(p.file == str(path) for p in info.value.problems)
    return [f"{p.line}: {p.field}: {p.message}" for p in info.value.problems]


VALID = """
name: restart-node
description: Restart an RPC node behind HAProxy
params:
  node: {type: string, required: true, pattern: "^rpc-[0-9]+$", description: Node to restart}
  force: {type: bool, default: false}
  max_lag: {type: int, default: 16, min: 0}
  mode: {type: enum, values: [drain, maint], default: drain}
  settle: {type: duration, default: 30s}
  api_key: {type: string, secret: true, required: false}
target: node
approval: commander
timeout: 30m
steps:
  - id: check
    name: Check the node
    uses: http.request
    with:
      url: "http://{{ params.node }}:8545"
      method: POST
      json: {jsonrpc: "2.0", method: eth_blockNumber, id: "{{ run.id }}"}
    when: "{{ params.force or incident.severity == 'SEV1' }}"
    retry: {max_attempts: 3, backoff: 2s, max_backoff: 1m}
    timeout: 2m
    idempotent: true
    wait_until:
      check: "{{ outputs.status == 200 and params.max_lag > 0 }}"
      interval: 5s
      timeout: 10m
    on_failure:
      - id: undrain
        uses: incident.note
        with: {text: "check of {{ target }} ended {{ steps.check.status }}"}
  - id: pause
    uses: wait.sleep
    with: {seconds: "{{ params.settle }}"}
    when: steps.check.outputs.status == 200
    on_failure:
      - id: tell
        uses: incident.note
        with: {text: "{{ incident.ref }}: pause failed after {{ steps.check.outputs.status }}"}
      - id: tell_again
        uses: incident.note
        with: {text: "event {{ steps.tell.outputs.event_id }} on {{ incident.channel_id }}"}
"""


def test_a_valid_multi_step_runbook_loads(tmp_path):
    runbook = load_file(write(tmp_path, "restart.yaml", VALID), REGISTRY)
    assert runbook.name == "restart-node"
    assert runbook.approval == "commander"
    assert runbook.target == "node"
    assert runbook.timeout == 1800.0
    assert list(runbook.params) == ["node", "force", "max_lag", "mode", "settle", "api_key"]
    node, settle, api_key = (runbook.params[n] for n in ("node", "settle", "api_key"))
    assert (node.required, node.default, node.pattern) == (True, None, "^rpc-[0-9]+$")
    assert (settle.required, settle.default) == (False, 30.0)
    assert (api_key.required, api_key.secret) == (False, True)
    assert runbook.params["force"].required is False  # a default makes a param optional

    check = runbook.steps[0]
    assert (check.id, check.label, check.uses, check.timeout) == (
        "check",
        "Check the node",
        "http.request",
        120.0,
    )
    assert check.with_["json"]["id"] == "{{ run.id }}"
    assert check.retry is not None
    assert (check.retry.max_attempts, check.retry.backoff, check.retry.max_backoff) == (3, 2, 60)
    assert check.wait_until is not None
    assert (check.wait_until.interval, check.wait_until.timeout) == (5.0, 600.0)
    assert check.idempotent is True
    pause = runbook.steps[1]
    assert (pause.label, pause.idempotent, pause.retry, pause.timeout) == (
        "pause",
        None,
        None,
        None,
    )
    assert [s.id for s in runbook.all_steps()] == [
        "check",
        "pause",
        "undrain",
        "tell",
        "tell_again",
    ]
    assert runbook.step("tell") is pause.on_failure[0]


def test_a_runbook_survives_a_json_round_trip_and_has_a_stable_digest(tmp_path):
    runbook = load_file(write(tmp_path, "restart.yaml", VALID), REGISTRY)
    snapshot = json.loads(json.dumps(runbook.model_dump(mode="json")))
    assert snapshot["steps"][0]["with"]["url"] == "http://{{ params.node }}:8545"
    assert snapshot["params"]["settle"]["default"] == 30.0
    again = Runbook.model_validate(snapshot)
    assert again == runbook
    assert again.digest == runbook.digest
    assert len(runbook.digest) == 12 and int(runbook.digest, 16) >= 0
    edited = load_file(
        write(tmp_path, "edited.yaml", VALID.replace("timeout: 2m", "timeout: 3m")), REGISTRY
    )
    assert edited.digest != runbook.digest


# Every problem, with its line and field.


def test_yaml_syntax_errors_have_a_line(tmp_path):
    found = problems(
        tmp_path,
        """
        name: broken
        steps:
          - id: a
            uses: incident.note
           with: {text: x}
        """,
    )
    assert found == [
        "5: : invalid YAML: while parsing a block collection (line 3) expected <block end>, "
        "but found '<block mapping start>'"
    ]
    assert problems(tmp_path, 'name: "unterminated\nsteps: []\n') == [
        "3: : invalid YAML: while scanning a quoted scalar (line 1) found unexpected end of stream"
    ]
    path = tmp_path / "rb.yaml"
    assert str(RunbookError([Problem(str(path), 5, "", "invalid YAML: x")])) == (
        f"{path}:5: invalid YAML: x"
    )


def test_an_empty_file_or_a_list_is_not_a_runbook(tmp_path):
    assert problems(tmp_path, "# nothing yet\n") == [
        "1: : the file is empty: a runbook is a mapping with at least name and steps"
    ]
    assert problems(tmp_path, "- name: x\n") == [
        "1: : a runbook is a mapping with name, steps, …; this file holds a list"
    ]


def test_unknown_and_missing_keys(tmp_path):
    found = problems(
        tmp_path,
        """
        name: keys
        descripton: typo
        steps:
          - id: a
            use: incident.note
            with: {text: hi}
            on_failure:
              - id: b
                uses: incident.note
                with: {text: bye}
                on_failure: []
        """,
    )
    assert found == [
        "2: descripton: unknown key (allowed: name, description, params, target, approval, "
        "timeout, steps)",
        "4: steps[0].uses: missing (required)",
        "5: steps[0].use: unknown key (allowed: id, name, uses, with, when, retry, timeout, "
        "idempotent, wait_until, if_skipped, on_failure, always)",
        "11: steps[0].on_failure[0].on_failure: a rollback step cannot have its own on_failure",
    ]


def test_a_clean_up_step_is_a_main_step(tmp_path):
    found = problems(
        tmp_path,
        """
        name: keys
        steps:
          - id: a
            uses: incident.note
            with: {text: hi}
            always: yes
            on_failure:
              - id: b
                uses: incident.note
                with: {text: bye}
                always: true
        """,
    )
    assert found == [
        "11: steps[0].on_failure[0].always: a rollback step cannot be always: make it a main "
        "step with always: true (a clean-up step)",
    ]
    assert problems(tmp_path, "description: no name, no steps\n") == [
        "1: name: missing (required)",
        "1: steps: missing (required)",
    ]


def test_bad_types_and_values(tmp_path):
    found = problems(
        tmp_path,
        """
        name: types
        approval: boss
        params:
          n: {type: integer}
        steps:
          - id: a
            uses: incident.note
            with: {text: hi}
            retry: 3
            idempotent: maybe
            when: true
          - id: b
            uses: incident.note
            with: {text: hi}
            retry: {max_attempts: 0}
        """,
    )
    assert found == [
        "2: approval: 'boss' is not allowed: use 'none', 'commander', 'two-person'",
        "4: params.n.type: 'integer' is not allowed: use 'string', 'int', 'bool', 'enum', "
        "'duration'",
        "9: steps[0].retry: expected a mapping with max_attempts, backoff, max_backoff, got 3",
        "10: steps[0].idempotent: expected true or false, got 'maybe'",
        "11: steps[0].when: expected text, got True",
        "15: steps[1].retry.max_attempts: Input should be greater than or equal to 1, got 0",
    ]
    assert problems(tmp_path, "name: x\nsteps: []\n") == [
        "2: steps: a runbook needs at least one step"
    ]


def test_bad_names(tmp_path):
    found = problems(
        tmp_path,
        """
        name: Restart Node
        params:
          Max-Lag: {type: int, default: 1}
        steps:
          - id: 1st
            uses: incident.note
            with: {text: hi}
        """,
    )
    assert found == [
        "1: name: 'Restart Node' is not a valid runbook name: use lowercase letters, digits "
        "and -, starting with a letter or digit, at most 63 characters, e.g. restart-node",
        "3: params.Max-Lag: 'Max-Lag' is not a valid param name: use lowercase letters, digits "
        "and _, starting with a letter, at most 63 characters, e.g. max_lag",
        "5: steps[0].id: '1st' is not a valid step id: use lowercase letters, digits and _, "
        "starting with a letter, at most 63 characters, e.g. check_lag",
    ]


def test_duplicate_step_ids_name_both_lines(tmp_path):
    found = problems(
        tmp_path,
        """
        name: dupes
        steps:
          - id: note
            uses: incident.note
            with: {text: one}
            on_failure:
              - id: undo
                uses: incident.note
                with: {text: undo}
          - id: undo
            uses: incident.note
            with: {text: two}
        """,
    )
    assert found == [
        "7: steps[0].on_failure[0].id: step id 'undo' is used again on line 10",
        "10: steps[1].id: duplicate step id 'undo' (first on line 7)",
    ]


def test_duplicate_yaml_keys_are_reported(tmp_path):
    found = problems(
        tmp_path,
        """
        name: keys
        steps:
          - id: a
            uses: incident.note
            uses: http.request
            with: {text: hi}
        """,
    )
    assert found == [
        "5: steps[0].uses: duplicate key 'uses' (first on line 4; the last one counts)",
        "6: steps[0].with.text: unknown input 'text' for http.request "
        "(inputs: method, url, json, timeout, expect_status)",
        "6: steps[0].with: missing required input 'url' for http.request",
    ]


def test_unknown_action_lists_the_known_ones(tmp_path):
    found = problems(
        tmp_path,
        """
        name: actions
        steps:
          - id: note
            uses: incident.note
            with: {text: hi}
          - id: check
            uses: htp.request
            with: {url: "http://rpc-1:8545"}
        """,
    )
    assert found == [
        "7: steps[1].uses: unknown action 'htp.request' (did you mean 'http.request'? "
        "known: http.request, incident.note, wait.sleep)"
    ]


def test_action_inputs_are_checked(tmp_path):
    found = problems(
        tmp_path,
        """
        name: inputs
        params:
          node: {type: string, default: rpc-1}
        steps:
          - id: check
            uses: http.request
            with:
              url: "ftp://{{ params.node }}"
              methd: POST
              method: DELETE
              timeout: -1
          - id: bad_url
            uses: http.request
            with:
              url: ftp://rpc-1
          - id: note
            uses: incident.note
            with: {}
          - id: note_later
            uses: incident.note
        """,
    )
    assert found == [
        "9: steps[0].with.methd: unknown input 'methd' for http.request "
        "(inputs: method, url, json, timeout, expect_status)",
        "10: steps[0].with.method: Input should be 'GET' or 'POST', got 'DELETE'",
        "11: steps[0].with.timeout: Input should be greater than 0, got -1",
        "15: steps[1].with.url: 'ftp://rpc-1' is not an http:// or https:// URL",
        "18: steps[2].with: missing required input 'text' for incident.note",
        "19: steps[3].with: missing required input 'text' for incident.note",
    ]


def test_inputs_given_as_expressions_are_checked_when_the_step_runs(tmp_path):
    path = write(
        tmp_path,
        "ok.yaml",
        """
        name: templated
        params:
          seconds: {type: int, default: 5}
          url: {type: string, default: "http://rpc-1:8545"}
        steps:
          - id: wait
            uses: wait.sleep
            with: {seconds: "{{ params.seconds }}"}
          - id: call
            uses: http.request
            with: {url: "{{ params.url }}", json: {nested: "{{ params.seconds }}"}}
        """,
    )
    runbook = load_file(path, REGISTRY)
    assert runbook.steps[0].with_ == {"seconds": "{{ params.seconds }}"}


def test_expressions_that_do_not_compile(tmp_path):
    found = problems(
        tmp_path,
        """
        name: syntax
        steps:
          - id: a
            uses: incident.note
            with: {text: "{{ params.x + }}"}
            when: "{{ a }} and {{ b }}"
          - id: b
            uses: incident.note
            with: {text: "{{ incident.ref | shout }}"}
            wait_until: {check: "outputs.event_id ==", timeout: 1m}
        """,
    )
    assert found == [
        "5: steps[0].with.text: '{{ params.x + }}': syntax error: unexpected "
        "'end of print statement'",
        "6: steps[0].when: '{{ a }} and {{ b }}': a condition must be one expression, e.g. "
        "'{{ params.force and steps.check.status == \"succeeded\" }}'",
        "9: steps[1].with.text: '{{ incident.ref | shout }}': syntax error: "
        "No filter named 'shout'.",
        "10: steps[1].wait_until.check: 'outputs.event_id ==': syntax error: "
        "unexpected 'end of print statement'",
    ]


def test_expressions_may_only_read_what_exists_and_has_run(tmp_path):
    found = problems(
        tmp_path,
        """
        name: refs
        params:
          node: {type: string, default: rpc-1}
        steps:
          - id: first
            uses: http.request
            with:
              url: "http://{{ params.nod }}:8545"
            when: "{{ steps.second.outputs.status == 200 }}"
            wait_until:
              check: "outputs.stauts == 200 or steps.first.status"
            on_failure:
              - id: undo
                uses: incident.note
                with: {text: "{{ steps.first.outputs.status }} {{ steps.second.status }}"}
          - id: second
            uses: incident.note
            with:
              text: "{{ steps.first.result }} {{ steps.nope.status }} {{ outputs.status }}"
            when: "{{ parms.node }} "
          - id: third
            uses: incident.note
            with:
              text: "{{ steps.second.outputs.evnt }} {{ incident.owner }} {{ run.user }}"
        """,
    )
    assert found == [
        "8: steps[0].with.url: 'http://{{ params.nod }}:8545': unknown param 'nod' (params: node)",
        "9: steps[0].when: '{{ steps.second.outputs.status == 200 }}': step 'second' runs "
        "later: a step can only read the steps before it",
        "11: steps[0].wait_until.check: 'outputs.stauts == 200 or steps.first.status': "
        "http.request has no output 'stauts' (outputs: status, json)",
        "11: steps[0].wait_until.check: 'outputs.stauts == 200 or steps.first.status': "
        "step 'first' cannot read its own outputs here (in wait_until.check, `outputs` is this "
        "step's latest outputs)",
        "15: steps[0].on_failure[0].with.text: '{{ steps.first.outputs.status }} "
        "{{ steps.second.status }}': step 'second' is not run before this rollback step: a "
        "rollback step can read 'first', the steps before it and earlier rollback steps of the "
        "same on_failure",
        "19: steps[1].with.text: '{{ steps.first.result }} {{ steps.nope.status }} "
        "{{ outputs.status }}': `outputs` is only available in wait_until.check (elsewhere use "
        "steps.<id>.outputs)",
        "19: steps[1].with.text: '{{ steps.first.result }} {{ steps.nope.status }} "
        "{{ outputs.status }}': steps.first.result: a step has only outputs and status "
        "(steps.first.outputs.<name>, steps.first.status)",
        "19: steps[1].with.text: '{{ steps.first.result }} {{ steps.nope.status }} "
        "{{ outputs.status }}': no step 'nope' (steps: first, undo, second, third)",
        "20: steps[1].when: '{{ parms.node }} ': unknown variable 'parms' "
        "(available: params, steps, incident, target, run, vars)",
        "24: steps[2].with.text: '{{ steps.second.outputs.evnt }} {{ incident.owner }} "
        "{{ run.user }}': incident has no 'owner' (incident: ref, title, severity, status, "
        "commander, channel_id, fields)",
        "24: steps[2].with.text: '{{ steps.second.outputs.evnt }} {{ incident.owner }} "
        "{{ run.user }}': run has no 'user' (run: id, requester)",
        "24: steps[2].with.text: '{{ steps.second.outputs.evnt }} {{ incident.owner }} "
        "{{ run.user }}': incident.note has no output 'evnt' (outputs: event_id)",
    ]


def test_what_rollback_steps_may_read_and_who_may_read_them(tmp_path):
    found = problems(
        tmp_path,
        """
        name: rollbacks
        steps:
          - id: drain
            uses: incident.note
            with: {text: drain}
            on_failure:
              - id: undrain
                uses: incident.note
                with: {text: "{{ steps.drain.status }} {{ steps.announce.status }}"}
              - id: report
                uses: incident.note
                with: {text: "{{ steps.undrain.outputs.event_id }}"}
          - id: restart
            uses: incident.note
            with: {text: "{{ steps.drain.outputs.event_id }} {{ steps.undrain.status }}"}
            on_failure:
              - id: tell
                uses: incident.note
                with:
                  text: "{{ steps.drain.status }} {{ steps.restart.status }}
                    {{ steps.report.status }}"
        """,
    )
    assert found == [
        "9: steps[0].on_failure[0].with.text: '{{ steps.drain.status }} "
        "{{ steps.announce.status }}': no step 'announce' (steps: drain, undrain, report, "
        "restart, tell)",
        "15: steps[1].with.text: '{{ steps.drain.outputs.event_id }} {{ steps.undrain.status }}'"
        ": step 'undrain' is a rollback step: it runs only if 'drain' fails, and then the run "
        "stops",
        "20: steps[1].on_failure[0].with.text: '{{ steps.drain.status }} "
        "{{ steps.restart.status }} {{ steps.report.status }}': step 'report' is a rollback "
        "step: it runs only if 'drain' fails, and then the run stops",
    ]


def test_target_must_name_a_param_that_is_not_secret(tmp_path):
    step = "steps:\n  - id: a\n    uses: incident.note\n    with: {text: hi}\n"
    assert problems(tmp_path, "name: t\nparams:\n  node: {type: string}\ntarget: nod\n" + step) == [
        "4: target: 'nod' is not a param (params: node)"
    ]
    assert problems(tmp_path, "name: t\ntarget: node\n" + step) == [
        "2: target: 'node' is not a param (params: this runbook has none)"
    ]
    assert problems(
        tmp_path, "name: t\nparams:\n  key: {type: string, secret: true}\ntarget: key\n" + step
    ) == ["4: target: param 'key' is secret; a lock target is shown to people"]


def test_param_definitions_are_checked(tmp_path):
    found = problems(
        tmp_path,
        """
        name: params
        params:
          mode: {type: enum, values: [drain, maint], default: reboot}
          kind: {type: enum}
          node: {type: string, pattern: "^rpc-[0-9]+$", default: db-1}
          rx: {type: string, pattern: "(["}
          lag: {type: int, default: many}
          low: {type: int, min: 5, default: 2}
          size: {type: string, min: 1}
          window: {type: duration, default: soon}
          force: {type: bool, default: perhaps}
          both: {type: int, required: true, default: 3}
          token: {type: string, secret: true, pattern: "^[a-f0-9]+$", default: hunter2}
          shape: {type: bool, values: [a]}
        steps:
          - id: a
            uses: incident.note
            with: {text: hi}
        """,
    )
    assert found == [
        "3: params.mode.default: the default does not fit the param: 'reboot' is not one of "
        "drain, maint",
        "4: params.kind.values: an enum param needs values: the allowed choices",
        "5: params.node.default: the default does not fit the param: 'db-1' does not match "
        "the pattern ^rpc-[0-9]+$",
        "6: params.rx.pattern: '([' is not a valid regular expression: unterminated character "
        "set at position 1",
        "7: params.lag.default: the default does not fit the param: expected a whole number, "
        "got 'many'",
        "8: params.low.default: the default does not fit the param: 2 is less than the minimum 5",
        "9: params.size.min: min is only for int params, not string",
        "10: params.window.default: the default does not fit the param: invalid duration "
        "'soon': use a number with a unit, e.g. 30m, 1h, 2d",
        "11: params.force.default: the default does not fit the param: expected true or false "
        "(yes/no, on/off, 1/0), got 'perhaps'",
        "12: params.both.required: a required param cannot have a default (drop one of them)",
        "13: params.token.default: the default does not fit the param: the value does not "
        "match the pattern ^[a-f0-9]+$",
        "14: params.shape.values: values are only for enum params, not bool",
    ]
    assert not any("hunter2" in line for line in found)


def test_bad_durations(tmp_path):
    found = problems(
        tmp_path,
        """
        name: durations
        timeout: forever
        steps:
          - id: a
            uses: incident.note
            with: {text: hi}
            timeout: 0s
            retry: {backoff: 2 minutes}
            wait_until: {check: "true", interval: 5x, timeout: -3}
        """,
    )
    assert found == [
        "2: timeout: invalid duration 'forever': use a number with a unit, e.g. 30m, 1h, 2d",
        "7: steps[0].timeout: Input should be greater than 0, got '0s'",
        "8: steps[0].retry.backoff: invalid duration '2 minutes': use a number with a unit, "
        "e.g. 30m, 1h, 2d",
        "9: steps[0].wait_until.interval: invalid duration '5x': use a number with a unit, "
        "e.g. 30m, 1h, 2d",
        "9: steps[0].wait_until.timeout: invalid duration -3: must not be negative",
    ]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    found = problems(
        tmp_path,
        """
        name: many
        approval: always
        steps:
          - id: a
            uses: nope.nothing
            with: {text: "{{ params.x }}"}
          - id: a
            uses: incident.note
            with: {txt: hi}
        """,
    )
    assert [line.split(":")[0] for line in found] == ["2", "4", "5", "6", "7", "9", "9"]


# Directories and catalogs


def test_duplicate_runbook_names_across_files_name_both_and_load_neither(tmp_path):
    one = write(
        tmp_path / "a",
        "one.yaml",
        "name: same\nsteps: [{id: a, uses: wait.sleep, with: {seconds: 1}}]\n",
    )
    two = write(
        tmp_path / "b",
        "two.yml",
        "# the same again\nname: same\nsteps: [{id: a, uses: wait.sleep, with: {seconds: 2}}]\n",
    )
    write(
        tmp_path / "b",
        "other.yaml",
        "name: other\nsteps: [{id: a, uses: wait.sleep, with: {seconds: 2}}]\n",
    )
    catalog = load_dirs([tmp_path / "a", tmp_path / "b"], REGISTRY)
    assert [str(p) for p in catalog.problems] == [
        f"{one}:1: name: runbook name 'same' is also used by {two}:2",
        f"{two}:2: name: runbook name 'same' is also used by {one}:1",
    ]
    assert catalog.names() == ["other"]
    assert catalog.get("same") is None


def test_load_dirs_reads_yaml_and_yml_sorted_and_keeps_going_past_broken_files(tmp_path):
    step = "steps: [{id: a, uses: wait.sleep, with: {seconds: 1}}]\n"
    write(tmp_path / "rb", "b.yml", "name: bravo\ndescription: second\n" + step)
    write(tmp_path / "rb", "a.yaml", "name: alpha\n" + step)
    broken = write(tmp_path / "rb", "c.yaml", "name: charlie\nsteps: [{id: a, uses: x.y}]\n")
    write(tmp_path / "rb", "notes.txt", "not a runbook")
    catalog = load_dirs([tmp_path / "rb"], REGISTRY)
    assert catalog.names() == ["alpha", "bravo"]
    assert [r.name for r in catalog.runbooks] == ["alpha", "bravo"]
    assert [p.name for p in catalog.files] == ["a.yaml", "b.yml", "c.yaml"]
    assert catalog.source_of("bravo") == tmp_path / "rb" / "b.yml"
    assert catalog.source_of("charlie") is None
    assert [str(p) for p in catalog.problems] == [
        f"{broken}:2: steps[0].uses: unknown action 'x.y' (known: http.request, incident.note, "
        "wait.sleep)"
    ]
    assert catalog.problem_files == [str(broken)]


def test_a_missing_directory_is_a_problem_unless_it_is_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_dirs([Path("runbooks")], REGISTRY).problems == []
    catalog = load_dirs([Path("runbooks"), Path("ops/runbooks")], REGISTRY)
    assert [str(p) for p in catalog.problems] == ["ops/runbooks: runbook directory not found"]
    catalog = load_paths([Path("runbooks")], REGISTRY)
    assert [str(p) for p in catalog.problems] == ["runbooks: no such file or directory"]


# Params


@pytest.fixture
def restart(tmp_path) -> Runbook:
    return load_file(write(tmp_path, "restart.yaml", VALID), REGISTRY)


def test_coerce_turns_text_into_typed_values_and_fills_defaults(restart):
    values = coerce(restart, {"node": "rpc-2", "force": "yes", "max_lag": " 8 ", "settle": "1m"})
    assert values == {
        "node": "rpc-2",
        "force": True,
        "max_lag": 8,
        "mode": "drain",
        "settle": 60.0,
        "api_key": None,
    }
    typed = coerce(restart, {"node": "rpc-3", "force": False, "max_lag": 0, "mode": "maint"})
    assert (typed["force"], typed["max_lag"], typed["mode"]) == (False, 0, "maint")
    for word, expected in [("on", True), ("OFF", False), ("1", True), ("0", False), ("No", False)]:
        assert coerce(restart, {"node": "rpc-1", "force": word})["force"] is expected


def test_coerce_reports_every_problem(restart):
    with pytest.raises(ParamError) as info:
        coerce(
            restart,
            {
                "nodes": "rpc-2",
                "force": "perhaps",
                "max_lag": "-1",
                "mode": "reboot",
                "settle": "soon",
            },
        )
    assert info.value.problems == [
        ("nodes", "unknown param (params: node, force, max_lag, mode, settle, api_key)"),
        ("node", "required (string)"),
        ("force", "expected true or false (yes/no, on/off, 1/0), got 'perhaps'"),
        ("max_lag", "'-1' is less than the minimum 0"),
        ("mode", "'reboot' is not one of drain, maint"),
        ("settle", "invalid duration 'soon': use a number with a unit, e.g. 30m, 1h, 2d"),
    ]
    with pytest.raises(ParamError) as info:
        coerce(restart, {"node": "db-1", "max_lag": "lots"})
    assert str(info.value) == (
        "node: 'db-1' does not match the pattern ^rpc-[0-9]+$; "
        "max_lag: expected a whole number, got 'lots'"
    )
    with pytest.raises(ParamError, match="node: must not be empty"):
        coerce(restart, {"node": ""})


def test_a_secret_value_is_never_repeated_in_a_problem(tmp_path):
    runbook = load_file(
        write(
            tmp_path,
            "secret.yaml",
            """
            name: rotate
            params:
              key: {type: string, secret: true, pattern: "^[a-f0-9]{8}$"}
            steps: [{id: a, uses: incident.note, with: {text: rotated}}]
            """,
        ),
        REGISTRY,
    )
    with pytest.raises(ParamError) as info:
        coerce(runbook, {"key": "hunter2-password"})
    assert info.value.problems == [("key", "the value does not match the pattern ^[a-f0-9]{8}$")]
    assert "hunter2" not in str(info.value)


def test_usage_and_masked(restart):
    assert usage(restart).splitlines() == [
        "node: string, required, pattern ^rpc-[0-9]+$ — Node to restart",
        "force: bool, default false",
        "max_lag: int, default 16, min 0",
        "mode: enum (drain | maint), default drain",
        "settle: duration, default 30s",
        "api_key: string, optional (secret)",
    ]
    values = coerce(restart, {"node": "rpc-2", "api_key": "s3cr3t"})
    assert masked(restart, values)["api_key"] == "***"
    assert masked(restart, values)["node"] == "rpc-2"
    assert values["api_key"] == "s3cr3t"  # a copy


def test_usage_never_shows_a_secret_default(tmp_path):
    runbook = load_file(
        write(
            tmp_path,
            "secret.yaml",
            """
            name: rotate
            params:
              key: {type: string, secret: true, default: hunter2, description: API key}
            steps: [{id: a, uses: incident.note, with: {text: rotated}}]
            """,
        ),
        REGISTRY,
    )
    assert usage(runbook) == "key: string, default *** (secret) — API key"


# The command line (with the real action registry).


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):  # type: ignore[no-untyped-def]
    """``code, out, err = run_cli("runbook", ...)`` in an empty directory (no database needed)."""
    from incidentbot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INCIDENTBOT_CONFIG", raising=False)
    monkeypatch.setenv("INCIDENTBOT_DATA_DIR", str(tmp_path / "data"))

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


CLI_RUNBOOK = """
name: restart-node
description: Restart an RPC node behind HAProxy
params:
  node: {type: string, required: true, pattern: "^rpc-[0-9]+$", description: Node to restart}
  settle: {type: duration, default: 90s}
  api_key: {type: string, secret: true, default: hunter2}
target: node
approval: commander
timeout: 30m
steps:
  - id: check
    name: Check the node
    uses: http.request
    with:
      url: "http://{{ params.node }}:8545"
      method: POST
    when: "{{ incident.severity != 'SEV4' }}"
    retry: {max_attempts: 3, backoff: 2s, max_backoff: 1m}
    timeout: 2m
    idempotent: true
    wait_until: {check: "outputs.status == 200", interval: 5s, timeout: 10m}
    on_failure:
      - id: undrain
        uses: incident.note
        with: {text: "rolled back"}
  - id: tell
    uses: incident.note
    with: {text: "{{ params.node }} answered {{ steps.check.outputs.status }}"}
"""


def test_cli_validate_ok(run_cli, tmp_path):
    write(tmp_path / "runbooks", "restart.yaml", CLI_RUNBOOK)
    code, out, err = run_cli("runbook", "validate")
    assert (code, err) == (0, "")
    assert out == "1 runbook OK (runbooks)\n"


def test_cli_validate_prints_every_problem_with_its_line(run_cli, tmp_path):
    write(tmp_path / "runbooks", "restart.yaml", CLI_RUNBOOK)
    broken = CLI_RUNBOOK.replace("uses: http.request", "uses: htp.request").replace(
        "{{ params.node }} answered", "{{ params.nod }} answered"
    )
    write(tmp_path / "runbooks", "broken.yaml", broken.replace("restart-node", "broken"))
    write(tmp_path / "runbooks", "twice.yml", CLI_RUNBOOK)
    code, out, err = run_cli("runbook", "validate")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(
        "runbooks/broken.yaml:13: steps[0].uses: unknown action 'htp.request' "
        "(did you mean 'http.request'? known: "
    )
    assert "http.request, incident.note" in lines[0]
    assert lines[1:] == [
        "runbooks/broken.yaml:28: steps[1].with.text: '{{ params.nod }} answered "
        "{{ steps.check.outputs.status }}': unknown param 'nod' (params: node, settle, api_key)",
        "runbooks/restart.yaml:1: name: runbook name 'restart-node' is also used by "
        "runbooks/twice.yml:1",
        "runbooks/twice.yml:1: name: runbook name 'restart-node' is also used by "
        "runbooks/restart.yaml:1",
    ]
    assert err == "4 problems in 3 files\n"


def test_cli_validate_given_paths_and_a_yaml_error(run_cli, tmp_path):
    good = write(tmp_path, "good.yaml", CLI_RUNBOOK)
    code, out, _ = run_cli("runbook", "validate", str(good))
    assert (code, out) == (0, f"1 runbook OK ({good})\n")
    write(tmp_path / "more", "bad.yaml", "name: bad\nsteps:\n  - id: a\n   uses: x\n")
    code, out, err = run_cli("runbook", "validate", str(good), "more", "missing.yaml")
    assert code == 1
    assert out.splitlines()[0] == "missing.yaml: no such file or directory"
    assert out.splitlines()[1].startswith("more/bad.yaml:4: invalid YAML: ")
    assert err == "2 problems in 2 files\n"


def test_cli_validate_with_a_configured_directory_that_is_missing(run_cli, tmp_path):
    write(tmp_path, "incidentbot.yaml", "runbooks:\n  dirs: [ops/runbooks]\n")
    code, out, err = run_cli("runbook", "validate")
    assert (code, out, err) == (
        1,
        "ops/runbooks: runbook directory not found\n",
        "1 problem in 1 file\n",
    )
    write(tmp_path / "ops" / "runbooks", "restart.yaml", CLI_RUNBOOK)
    assert run_cli("runbook", "validate")[:2] == (0, "1 runbook OK (ops/runbooks)\n")


def test_cli_list(run_cli, tmp_path):
    code, out, _ = run_cli("runbook", "list")
    assert (code, out) == (0, "No runbooks (searched: runbooks).\n")
    write(tmp_path / "runbooks", "restart.yaml", CLI_RUNBOOK)
    write(
        tmp_path / "runbooks",
        "announce.yaml",
        "name: announce\nsteps: [{id: a, uses: incident.note, with: {text: hi}}]\n",
    )
    write(tmp_path / "runbooks", "zz-broken.yaml", "name: [\n")
    code, out, err = run_cli("runbook", "list")
    assert code == 0
    rows = [
        [c.strip() for c in line.strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]
    assert out.splitlines()[1].split() == [
        "┃",
        "Name",
        "┃",
        "Approval",
        "┃",
        "Target",
        "┃",
        "Description",
        "┃",
    ]
    assert rows == [
        ["announce", "none", "-", "-"],
        ["restart-node", "commander", "node", "Restart an RPC node behind HAProxy"],
    ]
    assert err == (
        "warning: 1 problem in 1 file left runbooks out: run `incidentbot runbook validate`\n"
    )


def test_cli_show(run_cli, tmp_path):
    path = write(tmp_path / "runbooks", "restart.yaml", CLI_RUNBOOK)
    code, out, err = run_cli("runbook", "show", "restart-node")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "restart-node — Restart an RPC node behind HAProxy"
    assert lines[1].startswith("Source:   runbooks/restart.yaml (digest ")
    assert lines[2:] == [
        "Approval: the incident commander approves each run",
        "Target:   param node (one run at a time per value)",
        "Timeout:  30m for the whole run",
        "Params:",
        "  node: string, required, pattern ^rpc-[0-9]+$ — Node to restart",
        "  settle: duration, default 1m30s",
        "  api_key: string, default *** (secret)",
        "Steps:",
        "  1. check — Check the node",
        "     uses:       http.request",
        "     when:       {{ incident.severity != 'SEV4' }}",
        "     with:",
        "       url: http://{{ params.node }}:8545",
        "       method: POST",
        "     retry:      up to 3 attempts, backoff 2s doubling up to 1m",
        "     timeout:    2m per attempt",
        "     idempotent: yes",
        "     wait until: outputs.status == 200 (every 5s, for at most 10m)",
        "     on failure:",
        "       1.1 undrain",
        "           uses:       incident.note",
        "           with:",
        "             text: rolled back",
        f"           idempotent: {_default_idempotence('incident.note')}",
        "  2. tell",
        "     uses:       incident.note",
        "     with:",
        "       text: {{ params.node }} answered {{ steps.check.outputs.status }}",
        f"     idempotent: {_default_idempotence('incident.note')}",
    ]
    assert "hunter2" not in out
    assert path.exists()


def _default_idempotence(name: str) -> str:
    from incidentbot.runbooks.actions import registry

    action = registry.get(name)
    assert action is not None
    return f"{'yes' if action.idempotent else 'no'} ({name} default)"


def test_cli_show_an_unknown_runbook(run_cli, tmp_path):
    write(tmp_path / "runbooks", "restart.yaml", CLI_RUNBOOK)
    code, out, err = run_cli("runbook", "show", "restart")
    assert (code, out) == (1, "")
    assert err == "error: no runbook 'restart' (runbooks: restart-node)\n"
    write(tmp_path / "runbooks", "broken.yaml", "name: restart\nsteps: []\n")
    code, _, err = run_cli("runbook", "show", "restart")
    assert err == (
        "error: no runbook 'restart' (runbooks: restart-node); 1 runbook file has problems: "
        "run `incidentbot runbook validate`\n"
    )


def test_the_runbooks_that_ship_validate(run_cli):
    shipped = ROOT / "runbooks"
    code, out, err = run_cli("runbook", "validate", str(shipped))
    assert (code, err) == (0, "")
    assert out == f"7 runbooks OK ({shipped})\n"
    from incidentbot.runbooks.actions import registry

    catalog = load_dirs([shipped], registry)
    assert catalog.names() == [
        "announce",
        "failover-rpc-provider",
        "failover-validator",
        "http-check",
        "move-validator-keys",
        "restart-node",
        "restore-snapshot",
    ]
    check = catalog.get("http-check")
    assert check is not None
    assert [s.uses for s in check.steps] == ["http.request", "incident.note"]
    assert check.steps[0].wait_until is not None
    announce = catalog.get("announce")
    assert announce is not None
    assert [s.uses for s in announce.steps] == ["slack.post", "incident.note"]
