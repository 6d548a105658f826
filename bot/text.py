"""Text helpers shared by every command: safe quoting of user text, truncation, and moments in
time that each platform shows in the reader's own timezone."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

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

    return _MENTIONS.sub(_break, strip_moments(text))


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# A moment (or a span of time) inside message text: Discord shows it with <t:…> and Slack with
# <!date^…>, each in the reader's own timezone; the console, and anything else, shows the
# fallback the core wrote in the network's timezone. Private-use characters delimit it, and
# user text is stripped of them, so nobody can forge one.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MOMENT = re.compile("\ue000(\\d+)(?:-(\\d+))?:([^\ue000\ue001]*)\ue001")


class Moment(NamedTuple):
    start: int  # Unix seconds
    end: int | None
    fallback: str


def moment(start: datetime, fallback: str, end: datetime | None = None) -> str:
    """`fallback`, marked as the time from `start` (to `end`) for platforms that localise."""
    span = f"{int(start.timestamp())}" + (f"-{int(end.timestamp())}" if end else "")
    return f"{_OPEN}{span}:{strip_moments(fallback)}{_CLOSE}"


def render_moments(text: str, render: Callable[[Moment], str]) -> str:
    """Replace each marked moment with what `render` makes of it."""

    def one(match: re.Match[str]) -> str:
        end = int(match.group(2)) if match.group(2) else None
        return render(Moment(int(match.group(1)), end, match.group(3)))

    return strip_moments(_MOMENT.sub(one, text))


def plain_moments(text: str) -> str:
    """Every marked moment as its fallback (the network's timezone)."""
    return render_moments(text, lambda m: m.fallback)


def strip_moments(text: str) -> str:
    """Text with no moment delimiters left in it (user text; or a marker cut in half)."""
    return text.replace(_OPEN, "").replace(_CLOSE, "")
