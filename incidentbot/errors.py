"""Errors the core raises for requests it refuses. Interfaces show ``str(error)`` as is."""


class DomainError(Exception):
    """A request the core refuses; the message names what was wrong and what is allowed."""


class NotFound(DomainError):
    """The incident, role or item named does not exist."""
