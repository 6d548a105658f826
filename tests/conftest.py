"""Shared fixtures. Every database test runs on SQLite, and on PostgreSQL too when
HEADSUP_TEST_DATABASE_URL is set (CI sets it), each test in a schema of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storage.db import async_url
from tests.harness import ConsoleBot

PG_URL = os.environ.get("HEADSUP_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # a fixture's value, not a test class

    url: str
    schema: str | None
    backend: str


@pytest.fixture(params=BACKENDS)
async def db(request, tmp_path) -> AsyncIterator[TestDatabase]:
    """An empty database: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield TestDatabase(f"sqlite:///{tmp_path / 'headsup.db'}", None, "sqlite")
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(async_url(PG_URL))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield TestDatabase(PG_URL, schema, "postgresql")
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


BotFactory = Callable[..., Awaitable[ConsoleBot]]


@pytest.fixture
async def make_bot(db: TestDatabase) -> AsyncIterator[BotFactory]:
    """Build a console bot on the test database; section overrides as keyword dicts."""
    made: list[ConsoleBot] = []

    async def factory(**kwargs) -> ConsoleBot:
        bot = await ConsoleBot.create(db.url, db.schema, **kwargs)
        made.append(bot)
        return bot

    yield factory
    for bot in made:
        await bot.stop()


@pytest.fixture
async def bot(make_bot: BotFactory) -> ConsoleBot:
    """A console bot with default settings, started at Monday 2026-01-05 09:00 UTC."""
    return await make_bot()


@pytest.fixture(autouse=True, scope="session")
def _logs_to_stderr() -> None:
    """Logs go to standard error, as in production, so tests can capture them apart from chat."""
    from bot import logs

    logs.configure("INFO")
