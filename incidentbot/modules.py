"""Importing the Python modules that extend the bot (jobs, step actions) by name."""

from __future__ import annotations

import importlib

from incidentbot.errors import DomainError


def import_modules(modules: list[str], what: str) -> None:
    """Import each module; DomainError naming the one that fails and where it was named
    (``--import``, ``scheduler.imports``)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise DomainError(f"{what} {module}: cannot import it: {exc}") from None
