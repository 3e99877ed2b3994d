"""Errors the core raises for requests it refuses. Interfaces show ``str(error)`` as is."""


class DomainError(Exception):
    """A request the core refuses; the message names what was wrong and what is allowed.

    The message is plain text: it names people by their stored identity (``U0N581U33XT``,
    ``bob``) and lists them in ``people``, so that each door shows them its way (a mention in
    Slack, a name elsewhere)."""

    def __init__(self, *args: object, people: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(*args)
        self.people = tuple(people)


class NotFound(DomainError):
    """The incident, role or item named does not exist."""
