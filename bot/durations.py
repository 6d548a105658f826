"""Human-friendly durations: "15m", "2h", "1h30m", "7d", "45s", or a bare number of minutes."""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["format_duration", "parse_duration"]

_EXAMPLES = "try 15m, 2h, 1h30m or 7d"

# Every spelling of a unit a person is likely to type, mapped to its length in seconds.
_UNIT_NAMES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (7 * 86400, ("w", "wk", "wks", "week", "weeks")),
    (86400, ("d", "day", "days")),
    (3600, ("h", "hr", "hrs", "hour", "hours")),
    (60, ("m", "min", "mins", "minute", "minutes")),
    (1, ("s", "sec", "secs", "second", "seconds")),
)
_UNIT_SECONDS: dict[str, int] = {name: length for length, names in _UNIT_NAMES for name in names}

# One "<number><unit>" part, spaces allowed between the number and the unit and between parts.
_PART = re.compile(r"\s*(\d+)\s*([a-z]+)\s*")
_BARE_MINUTES = re.compile(r"\s*(\d+)\s*")

# Units written by format_duration, largest first (no weeks: "14d" reads better than "2w").
_FORMAT_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> dt.timedelta:
    """Parse "90m", "2h", "7d", "1h30m", "45s" or "90" (minutes) into a positive timedelta.

    Case and spaces do not matter ("1H 30m"). Raises ValueError with a message fit to show
    the person who typed it.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration must be text like 15m or 2h, not {type(text).__name__}")
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError(f"no duration given ({_EXAMPLES})")
    if cleaned.startswith("-"):
        raise ValueError(f"a duration can't be negative: {text.strip()!r}")

    bare = _BARE_MINUTES.fullmatch(cleaned)
    total = int(bare.group(1)) * 60 if bare else _sum_parts(cleaned, original=text.strip())

    if total <= 0:
        raise ValueError(f"a duration must be more than zero: {text.strip()!r}")
    try:
        return dt.timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"{text.strip()!r} is far too long for a duration") from None


def _sum_parts(cleaned: str, original: str) -> int:
    """Add up "1h30m"-style parts; raise ValueError if anything is left unexplained."""
    total = 0
    seen: set[int] = set()
    position = 0
    while position < len(cleaned):
        match = _PART.match(cleaned, position)
        if match is None or match.group(2) not in _UNIT_SECONDS:
            raise ValueError(f"couldn't understand {original!r} as a duration ({_EXAMPLES})")
        unit = _UNIT_SECONDS[match.group(2)]
        if unit in seen:
            raise ValueError(f"{original!r} gives the same unit twice ({_EXAMPLES})")
        seen.add(unit)
        total += int(match.group(1)) * unit
        position = match.end()
    return total


def format_duration(delta: dt.timedelta) -> str:
    """Write a timedelta the way parse_duration reads it: "1h30m", "15m", "2d", "0m".

    Fractions of a second are dropped; a negative duration gets a leading "-".
    """
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0m"
    sign = "-" if seconds < 0 else ""
    remaining = abs(seconds)
    parts: list[str] = []
    for unit, length in _FORMAT_UNITS:
        count, remaining = divmod(remaining, length)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)
