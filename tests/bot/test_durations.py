"""Tests for bot.durations: reading and writing durations like "1h30m"."""

import datetime as dt

import pytest

from bot.durations import format_duration, parse_duration

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", 90 * MINUTE),
        ("2h", 2 * HOUR),
        ("7d", 7 * DAY),
        ("1h30m", 90 * MINUTE),
        ("45s", dt.timedelta(seconds=45)),
        ("2w", 14 * DAY),
        ("1d2h3m4s", DAY + 2 * HOUR + 3 * MINUTE + dt.timedelta(seconds=4)),
    ],
)
def test_parses_unit_forms(text: str, expected: dt.timedelta) -> None:
    """Each unit, alone or combined, gives the right length."""
    assert parse_duration(text) == expected


def test_bare_number_means_minutes() -> None:
    """A number without a unit is minutes, as people type it for event durations."""
    assert parse_duration("90") == 90 * MINUTE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1H30M", 90 * MINUTE),
        (" 1h 30m ", 90 * MINUTE),
        ("1 h 30 m", 90 * MINUTE),
        ("\t2H\n", 2 * HOUR),
    ],
)
def test_case_and_spaces_do_not_matter(text: str, expected: dt.timedelta) -> None:
    """Upper case and stray spaces are accepted."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2 hours", 2 * HOUR), ("30 mins", 30 * MINUTE), ("1 day", DAY), ("1hr 15min", 75 * MINUTE)],
)
def test_accepts_spelled_out_units(text: str, expected: dt.timedelta) -> None:
    """Common spelled-out units ("hours", "mins", "day") are understood."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["0m", "0", "-5m", "-5", "abc", "", "   ", "1.5h", "5x", "h", "1h1h", "1h 30"]
)
def test_rejects_bad_input(text: str) -> None:
    """Zero, negative, empty and unreadable durations raise ValueError."""
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "no duration given"), ("-5m", "negative"), ("0m", "more than zero"), ("abc", "try")],
)
def test_errors_explain_what_to_do(text: str, fragment: str) -> None:
    """Each rejection says what was wrong in plain words."""
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


def test_absurdly_long_duration_is_a_value_error() -> None:
    """A number too big for a timedelta is a ValueError, not an OverflowError."""
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999999d")


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (90 * MINUTE, "1h30m"),
        (15 * MINUTE, "15m"),
        (2 * DAY, "2d"),
        (DAY + 30 * MINUTE, "1d30m"),
        (dt.timedelta(seconds=45), "45s"),
        (14 * DAY, "14d"),
    ],
)
def test_formats_compactly(delta: dt.timedelta, expected: str) -> None:
    """format_duration writes the shortest form, largest unit first."""
    assert format_duration(delta) == expected


def test_formats_zero_and_negative() -> None:
    """Zero is "0m" and a negative duration gets a leading minus."""
    assert (format_duration(dt.timedelta(0)), format_duration(-15 * MINUTE)) == ("0m", "-15m")


@pytest.mark.parametrize("text", ["1h30m", "15m", "2d", "24h", "1d2h3m4s", "45s"])
def test_text_round_trips(text: str) -> None:
    """Formatting a parsed duration gives back the same text (in canonical form)."""
    expected = "1d" if text == "24h" else text
    assert format_duration(parse_duration(text)) == expected


@pytest.mark.parametrize(
    "delta", [MINUTE, 90 * MINUTE, 7 * DAY, DAY + HOUR + MINUTE + dt.timedelta(seconds=1)]
)
def test_timedelta_round_trips(delta: dt.timedelta) -> None:
    """Parsing a formatted duration gives back the same timedelta."""
    assert parse_duration(format_duration(delta)) == delta
