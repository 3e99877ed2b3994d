"""A compact JSON-schema check for the subset Slack's API descriptions use.

``jsonschema`` is not a dependency of the project, and the vendor documents use only a few
keywords: ``$ref``, ``type`` (one or a list), ``enum``, ``pattern``, ``format``,
``properties``, ``required``, ``additionalProperties``, ``items``, ``minItems`` and
``uniqueItems``. One convention is Slack's own: its generator writes a *list* under ``items``
on a schema without ``type`` to mean "one of these" (``"latest": {"items": [message, null]}``),
so that is read as ``anyOf`` here; read literally it would check nothing.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
}


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _PY_TYPES.get(name, (object,)))


def _format_ok(value: str, fmt: str) -> bool:
    if fmt in ("uri", "url"):
        parsed = urlparse(value)
        return bool(parsed.scheme and parsed.netloc)
    if fmt == "email":
        return "@" in value
    return True


def resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` such as ``#/definitions/objs_user``."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported: {ref}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validate(
    value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$"
) -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``"path: reason"`` strings (empty if valid)."""
    if "$ref" in schema:
        return validate(value, resolve(schema["$ref"], root), root, path)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return _any_of(value, schema[combinator], root, path)
    errors: list[str] = []
    for sub in schema.get("allOf", []):
        errors += validate(value, sub, root, path)
    items = schema.get("items")
    if isinstance(items, list) and "type" not in schema:
        return errors + _any_of(value, items, root, path)
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, n) for n in names):
            return [*errors, f"{path}: expected {'/'.join(names)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [*errors, f"{path}: {value!r} is not one of {schema['enum']}"]
    if isinstance(value, str):
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if "format" in schema and not _format_ok(value, schema["format"]):
            errors.append(f"{path}: {value!r} is not a valid {schema['format']}")
    elif isinstance(value, dict):
        errors += _object(value, schema, root, path)
    elif isinstance(value, list):
        errors += _array(value, schema, root, path)
    return errors


def _any_of(
    value: Any, options: list[dict[str, Any]], root: dict[str, Any], path: str
) -> list[str]:
    failures = []
    for option in options:
        problems = validate(value, option, root, path)
        if not problems:
            return []
        failures.append(problems)
    best = min(failures, key=len)
    return [f"{path}: matches none of {len(options)} alternatives; closest: {best[0]}"]


def _object(
    value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str
) -> list[str]:
    errors = [
        f"{path}: missing required {name!r}"
        for name in schema.get("required", [])
        if name not in value
    ]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            errors += validate(item, properties[key], root, f"{path}.{key}")
        elif extra is False:
            errors.append(f"{path}: unexpected property {key!r}")
        elif isinstance(extra, dict):
            errors += validate(item, extra, root, f"{path}.{key}")
    return errors


def _array(value: list[Any], schema: dict[str, Any], root: dict[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if schema.get("uniqueItems"):
        seen = [json.dumps(v, sort_keys=True) for v in value]
        if len(set(seen)) != len(seen):
            errors.append(f"{path}: items are not unique")
    items = schema.get("items")
    for n, item in enumerate(value):
        if isinstance(items, dict):
            errors += validate(item, items, root, f"{path}[{n}]")
        elif isinstance(items, list):
            errors += _any_of(item, items, root, f"{path}[{n}]")
    return errors
