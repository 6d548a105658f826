"""The one clock. Everything asks it for the time, so tests and `:advance` can move time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def _system_now() -> datetime:
    return datetime.now(UTC)


class Clock:
    """Real time plus an offset that only ever grows (`:advance`); or frozen time in tests."""

    def __init__(self, source: Callable[[], datetime] = _system_now) -> None:
        self._source = source
        self._offset = timedelta()

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return self._source() + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward (never back) and return the new now."""
        if delta < timedelta():
            raise ValueError("the clock only moves forward")
        self._offset += delta
        return self.now()

    @classmethod
    def frozen(cls, at: datetime) -> Clock:
        """A clock that stands still at `at` until advanced."""
        if at.tzinfo is None:
            raise ValueError("a frozen clock needs a timezone-aware start")
        start = at.astimezone(UTC)
        return cls(lambda: start)
