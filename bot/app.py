"""The composition root: builds storage, the core, delivery, the scheduler and the platforms,
then runs every platform in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import structlog

from bot import logs
from bot.clock import Clock
from bot.config import ConfigError, Settings
from bot.core import Core, Registry, Services
from bot.delivery import DeliveryWorker, Outbox
from bot.ops import Operations
from bot.platforms import Platform
from bot.ui import Channel
from scheduler import Ticker
from storage.crypto import Cipher, CipherError, local_key
from storage.db import Database, sqlite_path

log = structlog.get_logger("headsup.app")

# `:advance` runs every due job at each moment something falls due; this bounds a runaway loop.
MAX_STEPS_PER_ADVANCE = 10_000


def make_cipher(settings: Settings) -> Cipher:
    """The field cipher from `storage.encryption_key`; the console may make a local key file."""
    key = settings.storage.encryption_key.get_secret_value()
    try:
        if key:
            return Cipher.from_setting(key)
        if not settings.console_enabled:
            raise ConfigError(
                "storage.encryption_key: required when Slack or Discord is configured "
                "(make one with `headsup keygen` and set HEADSUP_STORAGE__ENCRYPTION_KEY)"
            )
        path = _local_key_path(settings)
        try:
            return Cipher([local_key(path)])
        except OSError as exc:
            # E.g. storage.url names a folder that doesn't exist: one clear line, no traceback.
            raise ConfigError(
                f"storage.encryption_key: not set, and the local key file {path} cannot be "
                f"made ({exc.strerror or exc}); check storage.url or set the key"
            ) from None
    except CipherError as exc:
        raise ConfigError(f"storage.encryption_key: {exc}") from None


def _local_key_path(settings: Settings) -> Path:
    db_file = sqlite_path(settings.storage.url)
    return db_file.with_name(db_file.name + ".key") if db_file else Path("headsup.key")


def channel_platforms(settings: Settings) -> dict[Channel, list[str]]:
    """Which platforms have a place configured for each shared channel."""
    places: dict[Channel, list[str]] = {Channel.ANNOUNCEMENTS: [], Channel.COORDINATORS: []}
    if settings.console_enabled:
        for names in places.values():
            names.append("console")
    if settings.slack_enabled:
        if settings.slack.announce_channel:
            places[Channel.ANNOUNCEMENTS].append("slack")
        if settings.slack.coordinator_channel:
            places[Channel.COORDINATORS].append("slack")
    if settings.discord_enabled:
        if settings.discord.announce_channel_id:
            places[Channel.ANNOUNCEMENTS].append("discord")
        if settings.discord.coordinator_channel_id:
            places[Channel.COORDINATORS].append("discord")
    return places


def calendar_platforms(settings: Settings) -> list[str]:
    """Platforms that keep their own calendar of events (Discord's scheduled events)."""
    return ["discord"] if settings.discord_enabled else []


def default_registry() -> Registry:
    """The registry with every feature's commands, actions and due jobs."""
    import commands

    return commands.load()


class App:
    """One running bot: every configured platform, sharing one core and one database."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        registry: Registry | None = None,
        platforms: list[Platform] | None = None,
        console_in: TextIO | None = None,
        console_out: TextIO | None = None,
        db_schema: str | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        self.database = Database(settings.storage.url, schema=db_schema)
        self.cipher = make_cipher(settings)
        logs.set_pseudonym_key(self.cipher.derive("log-pseudonyms"))
        self.registry = registry or default_registry()
        places = channel_platforms(settings)
        calendars = calendar_platforms(settings)
        self.outbox = Outbox(self.cipher, lambda channel: places[channel], lambda: calendars)
        self.services = Services(
            settings, self.clock, self.database, self.cipher, self.outbox, self.registry
        )
        self.platforms: dict[str, Platform] = {}
        for platform in (
            platforms
            if platforms is not None
            else self._configured_platforms(console_in, console_out)
        ):
            self.platforms[platform.name] = platform
        self.ops = Operations(settings.http, self.database, self.platforms, self.clock)
        self.delivery = DeliveryWorker(
            self.database,
            self.outbox,
            self.clock,
            self.platforms,
            on_sent=self.ops.metrics.sent,
        )
        self.core = Core(self.services, on_commit=self.delivery.wake)
        self.ticker = Ticker(self.services)
        self._tasks: list[asyncio.Task] = []

    def _configured_platforms(self, console_in, console_out) -> list[Platform]:
        found: list[Platform] = []
        if self.settings.console_enabled:
            from bot.platforms.console import ConsolePlatform

            found.append(
                ConsolePlatform(
                    self.settings.console,
                    settle=self.settle,
                    advance=self.advance,
                    stdin=console_in,
                    out=console_out,
                )
            )
        if self.settings.slack_enabled:
            from bot.platforms.slack import SlackPlatform

            found.append(SlackPlatform(self.settings.slack))
        if self.settings.discord_enabled:
            from bot.platforms.discord import DiscordPlatform

            found.append(DiscordPlatform(self.settings.discord))
        return found

    async def start(self) -> None:
        """Migrate the database and connect every platform (no background work yet)."""
        await self.database.upgrade()
        for platform in self.platforms.values():
            await platform.start(self.core)
        log.info("app.started", platforms=sorted(self.platforms))

    async def serve(self) -> None:
        """`run`, stopping cleanly on SIGTERM as on Ctrl-C: a container being stopped or a
        rolling restart lets the requests in hand finish and closes the database, instead of
        being killed when its grace period ends."""
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        # No signal handlers outside the main thread (or on Windows): then Ctrl-C only.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, main.cancel)
        try:
            await self.run()
        except asyncio.CancelledError:
            log.info("app.terminated")
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGTERM)

    async def run(self) -> None:
        """Start, then run until every platform is done (the console at end of input)."""
        await self.start()
        try:
            await self.ops.start()
            self.ticker.start()
            self._tasks.append(asyncio.create_task(self.delivery.run(), name="delivery"))
            await self.settle()
            await asyncio.gather(*(p.run() for p in self.platforms.values()))
            await self.settle()
        finally:
            await self.stop()

    async def stop(self) -> None:
        await self.ops.stop()
        self.ticker.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.ticker.resign()
        for platform in self.platforms.values():
            await platform.stop()
        await self.database.close()
        log.info("app.stopped")

    async def settle(self) -> None:
        """Run whatever is due now and send every message that is ready."""
        await self.ticker.tick()
        await self.delivery.drain()

    async def advance(self, delta: timedelta) -> None:
        """Move the clock forward by `delta`, doing everything that falls due on the way, at the
        moment it falls due (so a week's prompt and its reminder come in order)."""
        target = self.clock.now() + delta
        for _ in range(MAX_STEPS_PER_ADVANCE):
            due = [t for t in (await self.ticker.next_due(), await self.delivery.next_due()) if t]
            upcoming = min(due, default=None)
            if upcoming is None or upcoming > target:
                break
            if upcoming > self.clock.now():
                self.clock.advance(upcoming - self.clock.now())
            before = upcoming
            await self.settle()
            still = [t for t in (await self.ticker.next_due(), await self.delivery.next_due()) if t]
            if still and min(still) <= before:
                # Something stays due however often it runs (a failing job): don't spin on it.
                break
        if target > self.clock.now():
            self.clock.advance(target - self.clock.now())
        await self.settle()
