"""Hostile text: what a person may type, or an alert may send, that Slack would read as markup.

Every entry says what it covers. The Slack adapter must show each one as the characters typed,
never as a mention, a channel link or a link. Add an entry with every defect found. (No tests
here: ``tests/test_slack_hostile_e2e.py`` and ``tests/test_slack_escaping.py`` use it.)
"""

from __future__ import annotations

import re

# (text, what it covers)
CORPUS: list[tuple[str, str]] = [
    ("<!channel>", "special mention: notifies every member of the channel"),
    ("<!here>", "special mention: notifies every active member of the channel"),
    ("<!everyone>", "special mention: notifies the whole workspace (#general)"),
    ("<!subteam^S0EVIL01>", "user group mention: pages a whole team"),
    ("<!subteam^S0EVIL01|@oncall>", "user group mention with a label"),
    ("<@U0EVIL001>", "a typed user mention (nobody who takes part)"),
    ("<@U0EVIL001|ceo>", "a typed user mention with a misleading label"),
    ("<#C0EVIL001>", "a typed channel link"),
    ("<#C0EVIL001|general>", "a typed channel link with a label"),
    ("<https://evil.example/login|status page>", "link markup hiding its target"),
    ("<mailto:root@evil.example|support>", "mailto link markup"),
    ("<!date^1700000000^{date}|fake date>", "a date token the bot did not build"),
    ("&lt;!channel&gt;", "an entity that would decode to a special mention if passed raw"),
    ("AT&T &amp; co", "a bare ampersand and an entity: both shown as typed"),
    ("<<!here>>", "nested angle brackets"),
    ("<!channel", "an unclosed bracket"),
    ("*bold* _italic_ ~strike~ `code`", "harmless mrkdwn formatting: may stay formatting"),
    ("ünïcödé ✓ 🚨 日本語", "unicode and emoji, shown unchanged"),
    ("x" * 500 + "<!channel>", "a special mention at the end of long text (after clipping)"),
]

# One line that carries every hazard, for the places that take one piece of text.
ALL_IN_ONE = " ".join(text for text, _ in CORPUS if len(text) < 100)
# Every hazard but user mentions, for text where a mention means something (an action item's
# owner).
NO_USER_MENTION = " ".join(t for t, _ in CORPUS if len(t) < 100 and not t.startswith("<@"))
# The same hazards within an incident title's 200 characters.
TITLE = "<!channel> <!here> <!everyone> <!subteam^S0EVIL01> <@U0EVIL001|ceo> <#C0EVIL001> " + (
    "<https://evil.example/login|status page> AT&T &amp; &lt;!here&gt; *rpc* ünï 🚨"
)

# Markup nobody but the bot may produce: special mentions, user and channel mentions, links,
# date tokens. The bot's own mentions (people who take part, the incident's channel) are
# allowed by the tests that scan for these.
SPECIAL = ("<!channel", "<!here", "<!everyone", "<!subteam^")
LIVE_TOKEN = re.compile(r"<([@#!]|https?:|mailto:)[^<>]*>?")
