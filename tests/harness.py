"""A whole bot on the console platform, in-process, for tests (after errbot's `testbot`).

bot = await ConsoleBot.create(url)
out = await bot.say("/checkin", as_="alice")   # what that line printed
await bot.advance("7d")
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from bot.app import App
from bot.clock import Clock
from bot.config import Settings
from bot.core import Registry
from bot.durations import parse_duration
from bot.platforms.console import ConsolePlatform
from storage.crypto import Cipher

# A Monday morning in winter (UTC = Europe/London).
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TEST_KEY = Cipher.generate_key()


def make_settings(url: str, **sections: dict[str, Any]) -> Settings:
    """Defaults plus the test database, a fixed key, and any section overrides."""
    data: dict[str, Any] = {
        "storage": {"url": url, "encryption_key": TEST_KEY},
        "console": {"user": "you", "coaches": ["coach", "coach2"], "coordinators": ["coordinator"]},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Settings(**data)


class ConsoleBot:
    """Drives a real App on the console platform and captures what it prints."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        schema: str | None,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.schema = schema
        self.registry = registry
        self.out = io.StringIO()
        self.app = self._build()

    @classmethod
    async def create(
        cls,
        url: str,
        schema: str | None = None,
        *,
        start: datetime = START,
        registry: Registry | None = None,
        **sections: dict[str, Any],
    ) -> ConsoleBot:
        bot = cls(make_settings(url, **sections), Clock.frozen(start), schema, registry)
        await bot.app.start()
        return bot

    def _build(self) -> App:
        return App(
            self.settings,
            clock=self.clock,
            registry=self.registry,
            console_out=self.out,
            console_in=io.StringIO(""),
            db_schema=self.schema,
        )

    @property
    def console(self) -> ConsolePlatform:
        platform = self.app.platforms["console"]
        assert isinstance(platform, ConsolePlatform)
        return platform

    @property
    def transcript(self) -> str:
        return self.out.getvalue()

    async def say(self, *lines: str, as_: str | None = None) -> str:
        """Type lines (as `as_`, if given) and return everything they caused to be printed."""
        before = len(self.transcript)
        if as_ is not None:
            self.console.user = as_
        for line in lines:
            await self.console.handle_line(line)
        return self.transcript[before:]

    async def advance(self, duration: str) -> str:
        """Move the clock forward, doing all that falls due; return what was printed."""
        before = len(self.transcript)
        await self.app.advance(parse_duration(duration))
        return self.transcript[before:]

    async def advance_to(self, moment: datetime) -> str:
        """Move the clock forward to `moment`, doing all that falls due; return what was printed."""
        before = len(self.transcript)
        await self.app.advance(moment - self.clock.now())
        return self.transcript[before:]

    async def restart(self) -> None:
        """Stop the app and start a fresh one on the same database and clock (a process restart:
        nothing in memory survives)."""
        await self.app.stop()
        self.app = self._build()
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()
