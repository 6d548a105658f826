"""The one clock: real time plus an offset that only grows, or frozen time for tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.clock import Clock

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_frozen_clock_stands_still():
    """A frozen clock gives the same time however much real time passes."""
    clock = Clock.frozen(START)
    first = clock.now()
    time.sleep(0.01)
    assert first == clock.now() == START


def test_advance_moves_a_frozen_clock():
    """advance moves the time forward by exactly the delta and returns the new time."""
    clock = Clock.frozen(START)
    assert clock.advance(timedelta(hours=2)) == START + timedelta(hours=2)
    assert clock.now() == START + timedelta(hours=2)


def test_advances_add_up():
    """Successive advances accumulate."""
    clock = Clock.frozen(START)
    clock.advance(timedelta(days=1))
    clock.advance(timedelta(minutes=30))
    assert clock.now() == START + timedelta(days=1, minutes=30)


def test_advancing_by_nothing_is_allowed():
    """A zero advance is not going backwards, and changes nothing."""
    clock = Clock.frozen(START)
    assert clock.advance(timedelta()) == START


def test_advancing_backwards_raises():
    """Time never goes back: a negative advance raises and leaves the time as it was."""
    clock = Clock.frozen(START)
    clock.advance(timedelta(hours=1))
    with pytest.raises(ValueError, match="forward"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == START + timedelta(hours=1)


def test_frozen_clock_refuses_a_naive_start():
    """A naive start would make every stored time ambiguous, so it is refused."""
    with pytest.raises(ValueError, match="timezone-aware"):
        Clock.frozen(datetime(2026, 1, 5, 9, 0))


def test_frozen_clock_reports_utc_for_a_non_utc_start():
    """A start given in another zone is reported as the same instant in UTC."""
    clock = Clock.frozen(datetime(2026, 7, 1, 10, 0, tzinfo=ZoneInfo("Europe/London")))
    assert clock.now() == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_frozen_clock_with_fixed_offset_start_is_utc():
    """A fixed-offset start is normalised to UTC too."""
    clock = Clock.frozen(datetime(2026, 1, 5, 12, 0, tzinfo=timezone(timedelta(hours=3))))
    assert clock.now().tzinfo is UTC
    assert clock.now().hour == 9


def test_system_clock_is_aware_utc():
    """The real clock answers in timezone-aware UTC, close to the system's time."""
    now = Clock().now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_system_clock_moves_with_real_time():
    """The real clock is not frozen."""
    clock = Clock()
    first = clock.now()
    time.sleep(0.01)
    assert clock.now() > first


def test_system_clock_can_be_advanced():
    """Advancing the real clock adds to real time (the console's `:advance`)."""
    clock = Clock()
    clock.advance(timedelta(days=7))
    assert abs(clock.now() - (datetime.now(UTC) + timedelta(days=7))) < timedelta(seconds=5)


def test_clock_adds_its_offset_to_the_given_source():
    """A clock on another time source follows that source, plus whatever was advanced."""
    reading = [START]
    clock = Clock(lambda: reading[0])
    clock.advance(timedelta(minutes=1))
    reading[0] = START + timedelta(hours=1)
    assert clock.now() == START + timedelta(hours=1, minutes=1)


def test_advance_returns_what_now_then_says():
    """The time advance returns is the time now() reports right after."""
    clock = Clock.frozen(START)
    assert clock.advance(timedelta(seconds=90)) == clock.now()
