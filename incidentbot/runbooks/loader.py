"""Loading runbook files: finding them, reading them and collecting every problem.

Every problem of every file is reported, never just the first: a file that cannot be read, YAML
syntax, duplicate keys, what :mod:`incidentbot.runbooks.checker` finds in the runbook itself,
and runbook names used by more than one file. :func:`load_dirs` builds the :class:`Catalog` of
the configured directories; each :class:`~incidentbot.runbooks.yaml_lines.Problem` prints as
``path:LINE: field: message``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from incidentbot.runbooks import keyguard, recovery
from incidentbot.runbooks.check_cache import CheckCache, digest
from incidentbot.runbooks.checker import ActionRegistry, Checker
from incidentbot.runbooks.definition import Runbook
from incidentbot.runbooks.yaml_lines import Problem, format_loc, parse_yaml

DEFAULT_DIR = Path("runbooks")
PATTERNS = ("*.yaml", "*.yml")


class RunbookError(Exception):
    """A runbook file cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Catalog:
    """The runbooks found in the configured directories, by name, and every problem met."""

    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    _by_name: dict[str, tuple[Runbook, Path]] = field(default_factory=dict, repr=False)

    def get(self, name: str) -> Runbook | None:
        entry = self._by_name.get(name)
        return entry[0] if entry else None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    @property
    def runbooks(self) -> list[Runbook]:
        """The valid runbooks, sorted by name."""
        return [self._by_name[name][0] for name in self.names()]

    def source_of(self, name: str) -> Path | None:
        entry = self._by_name.get(name)
        return entry[1] if entry else None

    @property
    def problem_files(self) -> list[str]:
        """The files that have problems, in the order first reported."""
        return list(dict.fromkeys(p.file for p in self.problems))


# Loading


def load_file(path: str | Path, actions: ActionRegistry) -> Runbook:
    """Read and check one runbook file; raises RunbookError listing every problem."""
    runbook, problems, _ = _load(Path(path), actions)
    if problems or runbook is None:
        raise RunbookError(problems)
    return runbook


def load_text(text: str, source: str, actions: ActionRegistry) -> Runbook:
    """Check a runbook given as text (``source`` names it in problems)."""
    runbook, problems, _ = _check_text(text, source, actions)
    if problems or runbook is None:
        raise RunbookError(problems)
    return runbook


def load_dirs(
    dirs: Iterable[str | Path], actions: ActionRegistry, *, cache: CheckCache | None = None
) -> Catalog:
    """Every runbook in the configured directories (``*.yaml`` and ``*.yml``, sorted by file
    name, directory by directory). A missing directory is a problem unless it is the default
    ``runbooks``. Invalid files are left out and their problems listed in ``problems``; a
    runbook name used by more than one file is left out too (which one was meant is unknown).
    With ``cache``, a file that passed the check before (same text, same checking code) is
    not checked again (see :mod:`incidentbot.runbooks.check_cache`); the files that pass are
    remembered there."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in dirs:
        directory = Path(raw)
        if not directory.exists():
            if directory != DEFAULT_DIR:
                problems.append(Problem(str(directory), None, "", "runbook directory not found"))
            continue
        if not directory.is_dir():
            problems.append(Problem(str(directory), None, "", "not a directory"))
            continue
        files.extend(_files_in(directory))
    catalog = _catalog(files, problems, actions, cache)
    if cache is not None:
        cache.save()
    return catalog


def load_paths(paths: Iterable[str | Path], actions: ActionRegistry) -> Catalog:
    """Like :func:`load_dirs` for paths given explicitly: each a runbook file or a directory;
    any missing path is a problem."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(_files_in(path))
        elif path.exists():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, "", "no such file or directory"))
    return _catalog(files, problems, actions)


def _files_in(directory: Path) -> list[Path]:
    found = {p for pattern in PATTERNS for p in directory.glob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.name)


def _catalog(
    files: list[Path],
    problems: list[Problem],
    actions: ActionRegistry,
    cache: CheckCache | None = None,
) -> Catalog:
    catalog = Catalog(problems=problems, files=list(dict.fromkeys(files)))
    seen: dict[str, list[tuple[Path, int | None]]] = {}
    loaded: dict[Path, Runbook] = {}
    for path in catalog.files:
        runbook, file_problems, name_at = _load(path, actions, cache)
        catalog.problems.extend(file_problems)
        if name_at is not None:
            seen.setdefault(name_at[0], []).append((path, name_at[1]))
        if runbook is not None and not file_problems:
            loaded[path] = runbook
    for name, places in seen.items():
        if len(places) < 2:
            continue
        for path, line in places:
            others = ", ".join(
                f"{other}:{other_line}" if other_line else str(other)
                for other, other_line in places
                if other != path
            )
            catalog.problems.append(
                Problem(str(path), line, "name", f"runbook name {name!r} is also used by {others}")
            )
            loaded.pop(path, None)
    for path, runbook in loaded.items():
        catalog._by_name[runbook.name] = (runbook, path)
    return catalog


def _load(
    path: Path, actions: ActionRegistry, cache: CheckCache | None = None
) -> tuple[Runbook | None, list[Problem], tuple[str, int | None] | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(str(path), None, "", f"not UTF-8 text: {exc.reason}")], None
    except OSError as exc:
        return None, [Problem(str(path), None, "", f"cannot read: {exc.strerror or exc}")], None
    if cache is None:
        return _check_text(text, str(path), actions)
    key = digest(text)
    if cache.passed(key):
        known = _read_checked(text)
        if known is not None:
            return known
    runbook, problems, name_at = _check_text(text, str(path), actions)
    if runbook is not None and not problems:
        cache.add(key)
    return runbook, problems, name_at


def _read_checked(text: str) -> tuple[Runbook, list[Problem], tuple[str, int | None]] | None:
    """A file that passed the check with this very text and code: only read into its model
    (None, to check it in full, should that fail after all)."""
    try:
        data, lines, duplicates = parse_yaml(text)
        if duplicates or not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        runbook = Runbook.model_validate(data)
    except (yaml.YAMLError, ValidationError):
        return None
    return runbook, [], (data["name"], lines.get(("name",)))


def _check_text(
    text: str, source: str, actions: ActionRegistry
) -> tuple[Runbook | None, list[Problem], tuple[str, int | None] | None]:
    """The runbook (None if it has problems), its problems sorted by line, and the runbook's
    name with its line if the file names one (for the duplicate-name check)."""
    problems: list[Problem] = []
    try:
        data, lines, duplicates = parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        context = exc.context or ""
        if context and exc.context_mark and exc.context_mark.line + 1 != line:
            context += f" (line {exc.context_mark.line + 1})"
        message = " ".join(p for p in (context, exc.problem) if p) or "invalid YAML"
        return None, [Problem(source, line, "", f"invalid YAML: {message}")], None
    except yaml.YAMLError as exc:
        return None, [Problem(source, None, "", f"invalid YAML: {exc}")], None
    if data is None:
        message = "the file is empty: a runbook is a mapping with at least name and steps"
        return None, [Problem(source, 1, "", message)], None
    if not isinstance(data, dict):
        message = f"a runbook is a mapping with name, steps, …; this file holds {_kind(data)}"
        return None, [Problem(source, 1, "", message)], None

    checker = Checker(source, lines, actions)
    for loc, line, first_line in duplicates:
        message = f"duplicate key {loc[-1]!r} (first on line {first_line}; the last one counts)"
        checker.problems.append(Problem(source, line, format_loc(loc), message))
    runbook: Runbook | None = None
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            checker.add_pydantic(error)
    checker.check(data)
    if runbook is not None:
        _check_skips(checker, runbook)
        for loc, message in keyguard.check_runbook(runbook, actions):
            checker.add(loc, message)
    problems = sorted(checker.problems, key=lambda p: p.line or 0)
    name = data.get("name")
    name_at = (name, lines.get(("name",))) if isinstance(name, str) else None
    return (None if problems else runbook), problems, name_at


def _check_skips(checker: Checker, runbook: Runbook) -> None:
    """A step's ``if_skipped`` gives every output the steps after it read."""
    for index, step in enumerate(runbook.steps):
        if not step.if_skipped:
            continue
        gaps = recovery.skip_gaps(runbook, step.id)
        if gaps:
            checker.add(
                ("steps", index, "if_skipped"),
                "misses outputs later steps read after a skip: "
                + recovery.describe_gaps(step.id, gaps),
            )


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return f"a single value ({type(value).__name__})"
