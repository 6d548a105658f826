"""Text helpers: user text made inert, and moments each platform shows in the reader's zone."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.text import moment, plain_moments, quote_user_text, render_moments

START = datetime(2026, 1, 13, 19, 0, tzinfo=UTC)
END = datetime(2026, 1, 13, 20, 0, tzinfo=UTC)


def test_a_moment_reads_as_its_fallback_where_nothing_localises():
    """The console (and any platform without timestamps) shows the fallback text."""
    text = f"Starts {moment(START, '19:00 (UK time)')}."
    assert plain_moments(text) == "Starts 19:00 (UK time)."


def test_a_span_is_rendered_by_the_platform_with_both_ends():
    """A platform renderer gets the start and end as Unix seconds."""
    text = moment(START, "19:00–20:00 (UK time)", END)
    assert render_moments(text, lambda m: f"{m.start}/{m.end}") == "1768330800/1768334400"


def test_user_text_cannot_forge_a_moment():
    """Delimiters typed by a user are dropped, so their text never renders as a time."""
    forged = quote_user_text("\ue0001768330800:gotcha\ue001")
    assert render_moments(forged, lambda m: "RENDERED") == "1768330800:gotcha"


def test_a_moment_cut_in_half_leaves_no_stray_delimiters():
    """A marker truncated by a length limit renders as plain text, without private characters."""
    text = moment(START, "19:00 (UK time)")[:12]
    assert "\ue000" not in render_moments(text, lambda m: "x")
