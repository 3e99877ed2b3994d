"""The double-sign interlock: a validator key set never signs in two places at once.

A validator key that signs on two clients at the same time is slashed. Actions say what they do
to a key set with class attributes (see :class:`~incidentbot.runbooks.actions.base.Action`):
``signs``, ``proves_stopped``, ``imports_protection`` and ``verifies_protection``; their
``key_set_input`` and ``client_input`` name the inputs that say which key set and which client.

The rule, for a step that starts client ``C`` signing with key set ``K``:

1. every other client named for ``K`` has been proven stopped (a ``proves_stopped`` step that
   succeeded), and none was started again after its proof; at least one such proof exists;
2. after the last of those proofs, ``C`` imported slashing-protection history for ``K``
   (``imports_protection``) and then verified it covers the source's (``verifies_protection``).

It is checked twice. :func:`check_runbook` checks the file (``runbook validate``, and every
load) along each path a run can take: the main steps in order, and for each step with
``on_failure`` the main steps up to it followed by its rollback steps (so a rollback that
restarts the source must first prove the target stopped). :func:`admit` checks
the run itself: before each key step runs, the engine records in the ledger (in its own
commit, before the side effect) what it is about to do, with the key set and client as rendered;
a signing step runs only if the recorded steps that succeeded prove the rule. A hand-edited
definition snapshot cannot skip a proof: the records come from the actions' code, not from the
snapshot.

A ``verifies_protection`` step that fails (history missing, older than the source's, not
readable) stops the run for attention; it is never retried past, rolled back or skipped by the
engine on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from incidentbot.ledger.actions import NeedsAttentionError, RetryableError
from incidentbot.ledger.models import STEP_STARTED, STEP_SUCCEEDED
from incidentbot.ledger.service import get_step, get_steps
from incidentbot.runbooks.actions.base import Action
from incidentbot.runbooks.definition import RollbackStep, Runbook

SIGNS = "signs"
PROVES_STOPPED = "proves_stopped"
IMPORTS = "imports_protection"
VERIFIES = "verifies_protection"
EFFECTS = (SIGNS, PROVES_STOPPED, IMPORTS, VERIFIES)
KEY = "interlock"  # under the step row's input, next to what the spec gave it
ANY = "*"  # the key set of a step that names none: it counts for every key set

_WORDS = {
    SIGNS: "starts signing",
    PROVES_STOPPED: "proves stopped",
    IMPORTS: "imports slashing-protection history",
    VERIFIES: "verifies slashing-protection history",
}


def effect_of(action: Action | None) -> str | None:
    """What ``action`` does to a key set, or None (most actions)."""
    if action is None:
        return None
    for effect in EFFECTS:
        if getattr(action, effect, False):
            return effect
    return None


@dataclass(frozen=True)
class KeyStep:
    """One step that does something to a key set, in the order a run takes it."""

    effect: str
    keys: str
    client: str  # how a message names the client
    label: str  # how a message names it: the step id (file) or the step's label (run)
    loc: tuple[Any, ...] = ()
    seq: int = 0
    # ``input=value`` for each input naming the client (a program, a data directory): two
    # steps sharing one, directly or through other steps, are about the same client.
    ids: tuple[str, ...] = ()


def _inputs(action: Action) -> tuple[str, ...]:
    names = action.client_input
    return (names,) if isinstance(names, str) else tuple(names)


def _key_step(
    effect: str, action: Action, get: Any, label: str, loc: tuple[Any, ...] = (), seq: int = 0
) -> KeyStep:
    """The key step of ``action`` whose inputs ``get(name)`` reads."""
    keys = ANY if action.key_set_input is None else _canonical(get(action.key_set_input))
    ids = tuple(
        f"{name}={_canonical(get(name))}" for name in _inputs(action) if get(name) is not None
    )
    if not ids:
        ids = (f"{_inputs(action)[0]}=({_inputs(action)[0]} not given)",)
    client = ids[0].split("=", 1)[1]
    return KeyStep(effect, keys, client, label, loc, seq, ids)


def _groups(steps: list[KeyStep]) -> dict[str, str]:
    """Each identity's client: identities named by one step belong to one client."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for k in steps:
        ids = k.ids or (k.client,)
        for other in ids[1:]:
            parent[root(other)] = root(ids[0])
        root(ids[0])
    return {x: root(x) for x in parent}


def rule_problem(current: KeyStep, before: Iterable[KeyStep]) -> str:
    """Why ``current`` (a signing step) may not run after ``before`` (the key steps that
    happened, in order), or "" if it may."""
    earlier = [k for k in before if k.keys in (current.keys, ANY)]
    group = _groups([*earlier, current])

    def who(k: KeyStep) -> str:
        return group[(k.ids or (k.client,))[0]]

    me = who(current)
    names: dict[str, str] = {}
    for k in earlier:
        names.setdefault(who(k), k.client)
    others = sorted({who(k) for k in earlier if who(k) != me})
    what = f"starts signing with key set {current.keys} at {current.client}"
    stops: dict[str, int] = {}
    for other in others:
        client = names[other]
        last = None
        for i, k in enumerate(earlier):
            if who(k) == other and k.effect in (SIGNS, PROVES_STOPPED):
                last = (i, k)
        if last is None:
            return (
                f"{what}, but nothing proves that {client} (also named for this key set) "
                "stopped signing: add a step that proves it stopped before this one"
            )
        if last[1].effect == SIGNS:
            return (
                f"{what} while {client} may still sign with it ({last[1].label} started it "
                "and no later step proves it stopped): two clients signing with one key is "
                "slashed"
            )
        stops[other] = last[0]
    if not stops:
        return (
            f"{what}, but no earlier step proves the source client stopped: a step that "
            "proves it stopped (e.g. validator.stop) must come first"
        )
    after = max(stops.values())
    imported = [
        i for i, k in enumerate(earlier) if i > after and k.effect == IMPORTS and who(k) == me
    ]
    if not imported:
        return (
            f"{what}, but no step imports the slashing-protection history at "
            f"{current.client} after the source was proven stopped"
        )
    verified = [
        i
        for i, k in enumerate(earlier)
        if i > imported[0] and k.effect == VERIFIES and who(k) == me
    ]
    if not verified:
        return (
            f"{what}, but no step verifies the imported slashing-protection history at "
            f"{current.client} (it must cover the source's highest signed epochs)"
        )
    return ""


# -- the runbook file ---------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    if isinstance(value, str):
        text = " ".join(value.split())
        return re.sub(r"\{\{\s*(.*?)\s*\}\}", r"{{ \1 }}", text)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _static(step: RollbackStep, action: Action, loc: tuple[Any, ...]) -> KeyStep:
    effect = effect_of(action)
    assert effect is not None
    return _key_step(effect, action, step.with_.get, step.id, loc)


def check_runbook(runbook: Runbook, actions: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Every place the file breaks the rule, as (location, message); one per step."""
    problems: dict[tuple[Any, ...], str] = {}

    def key_steps(pairs: list[tuple[RollbackStep, tuple[Any, ...]]]) -> list[KeyStep]:
        out = []
        for step, loc in pairs:
            action = actions.get(step.uses)
            if effect_of(action) is not None:
                out.append(_static(step, action, loc))
        return out

    main = [(step, ("steps", i)) for i, step in enumerate(runbook.steps)]
    paths = [key_steps(main)]
    for i, step in enumerate(runbook.steps):
        if step.on_failure:
            rollbacks = [
                (rb, ("steps", i, "on_failure", j)) for j, rb in enumerate(step.on_failure)
            ]
            paths.append(key_steps(main[: i + 1] + rollbacks))
    for path in paths:
        for n, current in enumerate(path):
            if current.effect != SIGNS or current.loc in problems:
                continue
            why = rule_problem(current, path[:n])
            if why:
                problems[current.loc] = f"step {current.label} {why}"
    return sorted(problems.items(), key=lambda item: [str(p) for p in item[0]])


def plan_problems(
    planned: Iterable[Any], rendered: dict[str, dict[str, Any]], actions: Any
) -> dict[str, str]:
    """The rule on a plan's main steps with the values as rendered (``source`` and ``target``
    given the same client are caught here, before anything runs): step id -> why.
    ``rendered`` holds the unmasked rendered inputs of the key steps. Steps a false ``when``
    skips are left out; from a step whose key set or client is known only at run time on,
    the run's own check decides."""
    path: list[KeyStep] = []
    out: dict[str, str] = {}
    for step in planned:
        action = actions.get(step.uses)
        effect = effect_of(action)
        if effect is None or step.rollback_for is not None or step.will_run is False:
            continue
        inputs = rendered.get(step.id, {})
        current = _key_step(effect, action, inputs.get, step.id)
        if "⟨" in json.dumps([current.keys, current.ids], ensure_ascii=False):
            return out
        if effect == SIGNS:
            why = rule_problem(current, path)
            if why:
                out[step.id] = f"the double-sign interlock refuses it: {step.id} {why}"
        path.append(current)
    return out


# -- the run ------------------------------------------------------------------------------------


def admit(
    session: Session,
    run_id: int,
    index: int,
    attempt: int,
    action: Action,
    inputs: Any,
    label: str,
) -> None:
    """Before a key step's side effect (in its own commit): note in the ledger what it is
    about to do, once per step (a later attempt keeps the first note). A signing step that the
    rule refuses raises :class:`NeedsAttentionError` and notes nothing. Steps that are not key
    steps pass untouched."""
    effect = effect_of(action)
    if effect is None:
        return
    step = get_step(session, run_id, index)
    if step.status != STEP_STARTED or step.attempts != attempt:
        raise RetryableError(
            f"{step.label}: attempt {attempt} is no longer the running one; nothing recorded"
        )
    found = (step.input or {}).get(KEY)
    recorded = _recorded(session, run_id)
    if isinstance(found, dict):
        current = _from_row(found, label)
    else:
        seq = 1 + max((k.seq for k in recorded), default=0)
        current = _key_step(effect, action, lambda n: getattr(inputs, n, None), label, seq=seq)
    if effect == SIGNS:
        why = rule_problem(current, [k for k in recorded if k.seq < current.seq])
        if why:
            raise NeedsAttentionError(f"interlock refused: {label} {why}. Nothing was started")
    if not isinstance(found, dict):
        note = {
            "effect": current.effect,
            "keys": current.keys,
            "client": current.client,
            "ids": list(current.ids),
            "seq": current.seq,
            "label": label,
        }
        step.input = {**(step.input or {}), KEY: note}
        session.add(step)


def _from_row(row: dict[str, Any], label: str) -> KeyStep:
    ids = row.get("ids")
    return KeyStep(
        str(row.get("effect")),
        str(row.get("keys")),
        str(row.get("client")),
        str(row.get("label") or label),
        seq=int(row.get("seq") or 0),
        ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
    )


def _recorded(session: Session, run_id: int) -> list[KeyStep]:
    """The run's key steps that count, in the order they started: a step counts if it
    succeeded, except a signing step, which counts once it was noted (its attempt started: it
    may have started the client even if it failed, was cut off or was skipped by a person)."""
    out = []
    for st in get_steps(session, run_id):
        row = (st.input or {}).get(KEY)
        if not isinstance(row, dict):
            continue
        key = _from_row(row, st.label)
        if key.effect != SIGNS and st.status != STEP_SUCCEEDED:
            continue
        out.append(key)
    return sorted(out, key=lambda k: k.seq)


def unverified(label: str, error: str) -> str:
    """The message of a run stopped because a verification of protection history failed."""
    return (
        f"interlock: {label} could not verify the slashing-protection history ({error}). "
        "The target must not start signing with a history that is missing or older than the "
        "source's: look at both clients, then resume the run (the check runs again) or "
        "cancel it"
    )
