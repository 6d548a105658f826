"""Weekly times in a member's own timezone, correct across clock changes; bank holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# `checkin.skip_holidays` → the `holidays` library's UK subdivision.
HOLIDAY_REGIONS = {"england-and-wales": "ENG", "scotland": "SCT", "northern-ireland": "NIR"}


def parse_weekday(text: str) -> int:
    """ "monday" (or "mon", any case) → 0."""
    word = text.strip().lower()
    for index, name in enumerate(WEEKDAYS):
        if word == name or (len(word) >= 3 and name.startswith(word)):
            return index
    raise ValueError(f"I don't know the day {text!r} — use a day name, like monday")


def parse_time(text: str) -> time:
    """ "08:00" or "8:00" (24-hour clock) → time(8, 0)."""
    try:
        hours, minutes = text.strip().split(":")
        if len(minutes) != 2 or not hours.isdigit() or not minutes.isdigit():
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(
            f"{text!r} isn't a time I understand — use the 24-hour clock, like 08:00 or 17:30"
        ) from None


def parse_timezone(text: str) -> str:
    """An IANA timezone name, matched case-insensitively ("europe/london" → "Europe/London")."""
    name = text.strip()
    canonical = _zone_names().get(name.lower())
    if canonical is None:
        raise ValueError(
            f"I don't know the timezone {text!r} — use a name like Europe/London or "
            "America/New_York"
        )
    try:
        ZoneInfo(canonical)
    except ZoneInfoNotFoundError:  # pragma: no cover - listed but not loadable
        raise ValueError(f"I don't know the timezone {text!r}") from None
    return canonical


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def local_moment(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`day` at `at` on the local wall clock, as UTC.

    A time the clocks skip (01:30 on the last Sunday of March in London) happens as the same
    wall-clock distance after the change (02:30 BST); a time that happens twice (01:30 on the last
    Sunday of October) happens the first time.
    """
    local = datetime.combine(day, at, tzinfo=zone)
    return local.astimezone(UTC)


def next_weekly(after: datetime, weekday: int, at: time, zone_name: str) -> datetime:
    """The first moment strictly after `after` that is `weekday` at `at` in the zone, as UTC."""
    zone = ZoneInfo(zone_name)
    local_date = after.astimezone(zone).date()
    days = (weekday - local_date.weekday()) % 7
    for extra in (0, 7, 14):
        moment = local_moment(local_date + timedelta(days=days + extra), at, zone)
        if moment > after:
            return moment
    raise AssertionError("unreachable: a weekly time recurs within two weeks")


def is_holiday(moment: datetime, zone_name: str, region: str) -> str | None:
    """The bank holiday's name when `moment` falls on one in `region` ("" → never)."""
    if not region:
        return None
    local_day = moment.astimezone(ZoneInfo(zone_name)).date()
    calendar = holidays.country_holidays("GB", subdiv=HOLIDAY_REGIONS[region], years=local_day.year)
    return calendar.get(local_day)


def describe_weekly(weekday: int, at: time | str, zone_name: str) -> str:
    """ "Mondays at 08:00 (Europe/London)"."""
    shown = at if isinstance(at, str) else at.strftime("%H:%M")
    return f"{WEEKDAYS[weekday].capitalize()}s at {shown} ({zone_name})"
