"""What a runbook file says: typed params, steps, approval, timeouts.

These models check everything one field can know on its own (names, types, durations, a param's
default against its own type). Checks that need the whole file or the action registry (unknown
actions, step references in expressions, ``target`` naming a param, duplicate step ids) are done
by :mod:`incidentbot.runbooks.checker`, which also knows the line of every field; load runbooks
through :mod:`incidentbot.runbooks.loader`.

A validated runbook dumps to plain JSON (``model_dump(mode="json")``) and reads back
(``model_validate``) unchanged, so a run can snapshot the definition it was started with.
Durations are stored as seconds (float).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from incidentbot.durations import parse_duration

RUNBOOK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

ParamType = Literal["string", "int", "bool", "enum", "duration"]
PARAM_TYPES: tuple[str, ...] = ("string", "int", "bool", "enum", "duration")
Approval = Literal["none", "commander", "two-person"]

_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def _seconds(value: Any) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"invalid duration {value!r}: use a number with a unit, e.g. 30s, 5m")
    if isinstance(value, str | int | float | timedelta):
        return parse_duration(value).total_seconds()
    raise ValueError(f"invalid duration {value!r}: use a number with a unit, e.g. 30s, 5m, 1h")


# A duration as written in the file (``30s``, ``5m``, ``1h30m`` or a number of seconds), kept as
# seconds.
Seconds = Annotated[float, BeforeValidator(_seconds)]


def format_seconds(seconds: float) -> str:
    """``90`` → ``1m30s``, ``1800`` → ``30m``: a duration as a runbook would write it."""
    whole = int(seconds)
    if whole != seconds or whole == 0:
        return f"{seconds:g}s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            out += f"{count}{unit}"
    return out


def _check_name(pattern: re.Pattern[str], what: str, example: str) -> Any:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(
                f"{value!r} is not a valid {what}: use lowercase letters, digits"
                f"{' and -' if '-' in example else ' and _'}, starting with a letter"
                f"{' or digit' if what == 'runbook name' else ''}, at most 63 characters, "
                f"e.g. {example}"
            )
        return value

    return check


ParamName = Annotated[str, AfterValidator(_check_name(PARAM_NAME, "param name", "max_lag"))]


def convert_value(
    kind: str,
    value: Any,
    *,
    values: list[str] | None = None,
    pattern: str | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    show: bool = True,
) -> Any:
    """Turn ``value`` (text from Slack, or already typed) into a value of param type ``kind``.

    Returns a str, int, bool, or (durations) seconds as a float. Raises ValueError saying what
    was expected; with ``show=False`` (secret params) the message never repeats the value."""
    shown = repr(value) if show else "the value"
    if kind == "string":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected text, got {_type_name(value)}")
        text = str(value)
        if pattern is not None and not re.fullmatch(pattern, text):
            raise ValueError(f"{shown} does not match the pattern {pattern}")
        return text
    if kind == "int":
        number = _to_int(value, shown)
        if minimum is not None and number < minimum:
            raise ValueError(f"{shown} is less than the minimum {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"{shown} is more than the maximum {maximum}")
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        raise ValueError(f"expected true or false (yes/no, on/off, 1/0), got {shown}")
    if kind == "enum":
        allowed = values or []
        if isinstance(value, str) and value.strip() in allowed:
            return value.strip()
        if not isinstance(value, bool) and isinstance(value, int | float) and str(value) in allowed:
            return str(value)
        raise ValueError(f"{shown} is not one of {', '.join(allowed)}")
    if kind == "duration":
        if isinstance(value, bool) or not isinstance(value, str | int | float | timedelta):
            raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {_type_name(value)}")
        try:
            return parse_duration(value).total_seconds()
        except ValueError as exc:
            if show:
                raise
            message = "invalid duration: use a number with a unit, e.g. 30m, 1h, 2d"
            raise ValueError(message) from exc
    raise ValueError(f"unknown param type {kind!r}")


def _to_int(value: Any, shown: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {shown}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    raise ValueError(f"expected a whole number, got {shown}")


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class Param(_Model):
    """One input of a runbook. ``required`` defaults to true unless a default is given."""

    type: ParamType
    description: str = ""
    values: list[str] | None = Field(default=None, validate_default=True)
    pattern: str | None = None
    min: int | None = None
    max: int | None = None
    secret: bool = False
    default: Any = None
    required: bool | None = Field(default=None, validate_default=True)

    @field_validator("values")
    @classmethod
    def _values(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        kind = info.data.get("type")
        if kind == "enum":
            if not value:
                raise ValueError("an enum param needs values: the allowed choices")
            if len(set(value)) != len(value):
                raise ValueError("values must not repeat")
        elif value is not None and kind is not None:
            raise ValueError(f"values are only for enum params, not {kind}")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        kind = info.data.get("type")
        if kind is not None and kind != "string":
            raise ValueError(f"pattern is only for string params, not {kind}")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return value

    @field_validator("min", "max")
    @classmethod
    def _bounds(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if value is not None and kind is not None and kind != "int":
            raise ValueError(f"{info.field_name} is only for int params, not {kind}")
        low = info.data.get("min")
        if info.field_name == "max" and value is not None and low is not None and value < low:
            raise ValueError(f"max {value} is less than min {low}")
        return value

    @field_validator("default")
    @classmethod
    def _default(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if value is None or kind is None:
            return value
        if any(name not in info.data for name in ("values", "pattern", "min", "max")):
            return value  # that field is wrong itself and reported; its default cannot be judged
        try:
            return convert_value(
                kind,
                value,
                values=info.data["values"],
                pattern=info.data["pattern"],
                minimum=info.data["min"],
                maximum=info.data["max"],
                show=not info.data.get("secret", False),
            )
        except ValueError as exc:
            raise ValueError(f"the default does not fit the param: {exc}") from None

    @field_validator("required")
    @classmethod
    def _required(cls, value: bool | None, info: ValidationInfo) -> bool:
        has_default = info.data.get("default") is not None
        if value is None:
            return not has_default
        if value and has_default:
            raise ValueError("a required param cannot have a default (drop one of them)")
        return value

    def convert(self, value: Any) -> Any:
        """``value`` as this param's type (seconds for durations); ValueError if it does not
        fit. Never repeats a secret value in the message."""
        return convert_value(
            self.type,
            value,
            values=self.values,
            pattern=self.pattern,
            minimum=self.min,
            maximum=self.max,
            show=not self.secret,
        )

    def format_value(self, value: Any) -> str:
        """A value as a runbook would write it (``30s``, ``true``); ``***`` for secrets."""
        if self.secret:
            return "***"
        if value is None:
            return "(none)"
        if self.type == "duration":
            return format_seconds(float(value))
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


class Retry(_Model):
    """Retry a step whose action failed in a way that retrying can fix."""

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Seconds = Field(default=1.0, ge=0, description="delay before the 2nd attempt")
    max_backoff: Seconds = Field(default=300.0, ge=0, description="cap on any one delay")


class WaitUntil(_Model):
    """Run the action again every ``interval`` until ``check`` is true or ``timeout`` passes.

    In ``check``, ``outputs`` is the step's latest outputs."""

    check: str = Field(min_length=1)
    interval: Seconds = Field(default=5.0, gt=0)
    timeout: Seconds = Field(default=600.0, gt=0)


class RollbackStep(_Model):
    """A step of an ``on_failure`` list (the same as a step, without its own ``on_failure``)."""

    id: Annotated[str, AfterValidator(_check_name(STEP_ID, "step id", "check_lag"))]
    name: str | None = None
    uses: str = Field(min_length=1)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = None
    retry: Retry | None = None
    timeout: Seconds | None = Field(default=None, gt=0)
    idempotent: bool | None = None
    wait_until: WaitUntil | None = None
    # What later steps read as this step's outputs when a person skips it after a crash ("it
    # happened"): values or expressions over the params and the steps before it.
    if_skipped: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        """The human label: ``name``, else the id."""
        return self.name or self.id


class Step(RollbackStep):
    on_failure: list[RollbackStep] = Field(default_factory=list)
    # A clean-up step: it also runs when the run fails, times out or is cancelled before
    # reaching it (its ``when`` still decides), and the runbook's timeout does not stop it.
    always: bool = False


class Runbook(_Model):
    name: Annotated[str, AfterValidator(_check_name(RUNBOOK_NAME, "runbook name", "restart-node"))]
    description: str = ""
    params: dict[ParamName, Param] = Field(default_factory=dict)
    target: str | None = None
    approval: Approval = "none"
    timeout: Seconds | None = Field(default=None, gt=0)
    steps: list[Step] = Field(min_length=1)

    def all_steps(self) -> list[RollbackStep]:
        """Every step: the main steps in order, then each main step's rollback steps."""
        out: list[RollbackStep] = list(self.steps)
        for step in self.steps:
            out.extend(step.on_failure)
        return out

    def step(self, step_id: str) -> RollbackStep | None:
        return next((s for s in self.all_steps() if s.id == step_id), None)

    def canonical_json(self) -> str:
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    @property
    def digest(self) -> str:
        """12 hex characters identifying this exact definition (sha256 of its canonical JSON)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]
