"""The people directory: one person per human across Slack, PagerDuty, the CLI and GitHub.

:mod:`~incidentbot.people.directory` resolves stored actors to people,
:mod:`~incidentbot.people.lookup` fills the cache from Slack when a user is first seen,
:mod:`~incidentbot.people.render` shows people in text (Slack mentions are the Slack adapter's:
:mod:`incidentbot.slack.mentions`), :mod:`~incidentbot.people.config` is the ``people``
settings. Core: imports no door, adapter or vendor SDK.
"""

from incidentbot.people.directory import Directory, Someone, is_slack_id, plain_id

BOT_ACTORS = frozenset({"incidentbot"})

__all__ = ["BOT_ACTORS", "Directory", "Someone", "is_slack_id", "plain_id"]
