"""Discord's global rate limit in the fake Discord, met by the real discord.py client: a burst
beyond the limit is answered 429, discord.py waits as told, and every request goes through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime

import aiohttp
import discord
import pytest
from discord.http import Route

from tests.fakes.discord_server import FakeDiscord

AUTH = {"Authorization": "Bot x"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def client(fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    """A bare discord.py client logged in to the fake (REST only, no gateway)."""
    default_base = Route.BASE
    Route.BASE = fake.base_url
    bot = discord.Client(intents=discord.Intents.none())
    try:
        await bot.login("x")
        yield bot
    finally:
        await bot.close()
        Route.BASE = default_base


def served_at(fake: FakeDiscord) -> list[float]:
    """When each message the bot posted was stored, in seconds, in order."""
    stamps = [datetime.fromisoformat(m["timestamp"]) for m in fake.messages.values()]
    return sorted(stamp.timestamp() for stamp in stamps)


async def test_a_burst_beyond_the_limit_waits_and_then_goes_through(
    fake: FakeDiscord, client: discord.Client
):
    """25 messages at once at 10 requests/s: some get a 429, all arrive, none early."""
    channels = [str(700 + i) for i in range(25)]
    for channel_id in channels:
        fake.add_channel(channel_id, f"room{channel_id}")
    fake.enforce_global_limit(10)
    began = time.monotonic()
    await asyncio.gather(*(client.get_partial_messageable(int(c)).send("hello") for c in channels))
    elapsed = time.monotonic() - began
    assert sorted(m["channel_id"] for m in fake.messages.values()) == channels
    assert fake.rate_limited > 0
    assert elapsed >= 1.9  # 10 at once, 10 a second later, the last 5 a second after that
    times = served_at(fake)
    assert all(times[i + 10] - times[i] >= 0.95 for i in range(len(times) - 10))


async def test_a_global_429_carries_what_discord_sends(fake: FakeDiscord):
    """Past the limit: 429, global in the body, Retry-After and the X-RateLimit-* headers."""
    fake.enforce_global_limit(1)
    async with aiohttp.ClientSession() as http:
        first = await http.get(f"{fake.base_url}/users/@me", headers=AUTH)
        second = await http.get(f"{fake.base_url}/users/@me", headers=AUTH)
        body = await second.json()
    assert first.status == 200
    assert second.status == 429
    assert body["global"] is True
    assert 0 < body["retry_after"] <= 1
    assert second.headers["Retry-After"] == "1"
    assert second.headers["X-RateLimit-Global"] == "true"
    assert second.headers["X-RateLimit-Scope"] == "global"
    assert second.headers["Via"] == "1.1 google"
    assert second.headers["Content-Type"] == "application/json"
    assert fake.rate_limited == 1


async def test_interaction_answers_are_not_counted(fake: FakeDiscord):
    """Interaction callbacks and follow-ups are exempt from the global limit, as on Discord."""
    fake.enforce_global_limit(1)
    async with aiohttp.ClientSession() as http:
        answers = [
            (await http.post(f"{fake.base_url}/interactions/1/t/callback", json={})).status
            for _ in range(3)
        ]
        me = await http.get(f"{fake.base_url}/users/@me", headers=AUTH)
    assert answers == [404, 404, 404]  # unknown interaction, never 429
    assert me.status == 200
    assert fake.rate_limited == 0


async def test_the_limit_is_not_enforced_unless_asked(fake: FakeDiscord):
    """By default a burst is answered at once, and enforcing 0 turns the limit off again."""
    async with aiohttp.ClientSession() as http:
        before = [
            (await http.get(f"{fake.base_url}/users/@me", headers=AUTH)).status for _ in range(20)
        ]
        fake.enforce_global_limit(2)
        fake.enforce_global_limit(0)
        after = [
            (await http.get(f"{fake.base_url}/users/@me", headers=AUTH)).status for _ in range(20)
        ]
    assert set(before) == set(after) == {200}
    assert fake.rate_limited == 0
