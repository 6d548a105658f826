"""Text helpers shared by every command: safe quoting of user text, truncation."""

from __future__ import annotations

import re

ZWSP = "\u200b"

# Anything in user text that a platform could turn into a mass ping or a role/channel mention:
# @everyone / @here (Discord, Slack), <!channel> <!here> <!everyone> <!subteam^…> (Slack),
# <@&role> and <#channel> (Discord), <@user> (both).
_MENTIONS = re.compile(r"@(everyone|here|channel)|<(?=[!@#])", re.IGNORECASE)


def quote_user_text(text: str) -> str:
    """User text made inert: it can never mention everyone, a role, a channel or a person.

    A zero-width space after each "@" or "<" keeps the text readable while no platform parses it
    as a mention. Adapters also disable mentions when they send; this is the second lock.
    """

    def _break(match: re.Match[str]) -> str:
        if match.group(0).startswith("@"):
            return "@" + ZWSP + match.group(1)
        return "<" + ZWSP

    return _MENTIONS.sub(_break, text)


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
