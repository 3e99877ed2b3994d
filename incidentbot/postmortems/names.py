"""The people directory as a document reads it: each actor resolved once per document.

A postmortem names the same few people thousands of times (every timeline entry has an actor,
summaries mention people); resolving each occurrence through the directory again costs more
than everything else the document does with the entry.
"""

from __future__ import annotations

from incidentbot.people import Directory, Someone


class OncePerActor(Directory):
    """``base``'s people, each actor looked up at most once (the answers never change while
    one document is built)."""

    def __init__(self, base: Directory):
        super().__init__(configured=base.configured, rows=base.rows)
        self._found: dict[str | None, Someone | None] = {}
        self._names: dict[str | None, str] = {}

    def find(self, actor: str | None) -> Someone | None:
        try:
            return self._found[actor]
        except KeyError:
            found = self._found[actor] = super().find(actor)
            return found

    def name(self, actor: str | None) -> str:
        try:
            return self._names[actor]
        except KeyError:
            shown = self._names[actor] = super().name(actor)
            return shown

    __call__ = name


def once_per_actor(names: Directory) -> Directory:
    return names if isinstance(names, OncePerActor) else OncePerActor(names)
