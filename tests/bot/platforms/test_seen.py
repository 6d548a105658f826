"""Event ids remembered in the database (bot.platforms.seen): a repeat is handled once, by
whichever instance saw it first, and a database in trouble never drops an event."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

import bot.platforms.seen as seen_module
from bot.core import Services
from bot.platforms.seen import SeenEvents
from tests.conftest import BotFactory


@pytest.fixture
async def services(make_bot: BotFactory) -> Services:
    return (await make_bot()).app.services


async def test_an_event_is_first_once_and_then_a_repeat(services: Services):
    """The first sighting of an id is first; the same id again is a repeat."""
    seen = SeenEvents(services, "discord")
    assert await seen.first("1234") is True
    assert await seen.first("1234") is False


async def test_another_instance_sees_the_repeat(services: Services):
    """Two instances on one database: the second to see an id is told it is a repeat."""
    one, other = SeenEvents(services, "discord"), SeenEvents(services, "discord")
    assert await one.first(1234) is True
    assert await other.first(1234) is False


async def test_each_platform_keeps_its_own_ids(services: Services):
    """The same id from two platforms is two events."""
    assert await SeenEvents(services, "discord").first("E1") is True
    assert await SeenEvents(services, "slack").first("E1") is True


async def test_an_event_without_an_id_is_always_first(services: Services):
    """Nothing to remember it by: it is handled every time."""
    seen = SeenEvents(services, "slack")
    assert [await seen.first(None), await seen.first(""), await seen.first(None)] == [True] * 3


async def test_a_database_failure_counts_as_a_first_sighting(
    services: Services, monkeypatch: pytest.MonkeyPatch
):
    """A database that fails never makes the bot drop an event."""

    def broken() -> None:
        raise ConnectionRefusedError

    monkeypatch.setattr(services.database, "session", broken)
    seen = SeenEvents(services, "discord")
    assert await seen.first("1234") is True
    assert await seen.first("1234") is True


async def test_a_slow_database_counts_as_first_and_still_records_it(
    services: Services, monkeypatch: pytest.MonkeyPatch
):
    """No answer in time: handled as first, and the late record still catches a later repeat."""
    real = seen_module.first_sighting

    async def slow(*args, **kwargs) -> bool:
        await asyncio.sleep(0.3)
        return await real(*args, **kwargs)

    monkeypatch.setattr(seen_module, "first_sighting", slow)
    seen = SeenEvents(services, "discord")
    began = time.monotonic()
    assert await seen.first("1234", within=0.05) is True
    assert time.monotonic() - began < 0.25  # it did not wait for the database
    await asyncio.sleep(0.5)
    monkeypatch.setattr(seen_module, "first_sighting", real)
    assert await seen.first("1234") is False


async def test_old_ids_are_forgotten_when_it_is_time_to_purge(services: Services):
    """A first sighting after the purge interval deletes ids older than a day."""
    seen = SeenEvents(services, "discord", purge_every=0.0)
    assert await seen.first("old") is True
    services.clock.advance(timedelta(days=2))
    assert await seen.first("new") is True
    assert await seen.first("old") is True  # forgotten, so seen afresh
    assert await seen.first("new") is False


async def test_ids_are_kept_until_the_purge_interval(services: Services):
    """Between purges nothing is deleted, however old."""
    seen = SeenEvents(services, "discord")
    await seen.purge()
    assert await seen.first("old") is True
    services.clock.advance(timedelta(days=2))
    assert await seen.first("new") is True
    assert await seen.first("old") is False
