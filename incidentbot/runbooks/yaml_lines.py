"""Reading runbook YAML with the line of every key and list item, and naming those places.

A place in a runbook file is a :data:`Loc`, the path of keys and list indexes from the top
(``("steps", 1, "with", "url")``); :func:`format_loc` prints it as ``steps[1].with.url``. A
:class:`Problem` is one thing wrong at such a place, printed as ``path:LINE: field: message``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a runbook file. ``line`` is 1-based (None: the whole file);
    ``field`` is the path of the key, e.g. ``steps[1].with.url`` (empty: the file itself)."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


def parse_yaml(text: str) -> tuple[Any, dict[Loc, int], list[tuple[Loc, int, int]]]:
    """The data, the 1-based line of every key and list item, and duplicate keys (with their
    line and the first one's).

    libyaml's parser reads a valid file several times faster than PyYAML's own; a file it
    refuses is read again by PyYAML, whose error messages are the ones users are shown."""
    if _FAST is not None:
        try:
            return _parse(_FAST, text)
        except yaml.YAMLError:
            pass
    return _parse(yaml.SafeLoader, text)


_FAST: Any = getattr(yaml, "CSafeLoader", None)


def _parse(loader_class: Any, text: str) -> tuple[Any, dict[Loc, int], list[tuple[Loc, int, int]]]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        duplicates: list[tuple[Loc, int, int]] = []
        if node is not None:
            _map_lines(loader, node, (), lines, duplicates, set())
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, lines, duplicates


def _map_lines(
    loader: Any,
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    duplicates: list[tuple[Loc, int, int]],
    visited: set[int],
) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if id(node) in visited:  # an alias: its lines are those of the anchor
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key = loader.construct_object(key_node)
            else:
                key = key_node.start_mark.line  # complex keys are refused by the models
            child = (*loc, key if isinstance(key, str | int) else str(key))
            line = key_node.start_mark.line + 1
            if child in lines and isinstance(key, str):
                duplicates.append((child, line, lines[child]))
                continue
            lines[child] = line
            _map_lines(loader, value_node, child, lines, duplicates, visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(loader, item, (*loc, index), lines, duplicates, visited)


def format_loc(loc: Sequence[Any]) -> str:
    """``("steps", 1, "with", "url")`` → ``steps[1].with.url``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
