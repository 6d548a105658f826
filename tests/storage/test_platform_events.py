"""Platform event ids: each is handled once, across sessions (and so across instances)."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from storage.db import Database
from storage.platform_events import KEEP_FOR, PlatformEvent, first_sighting, forget_old_events
from tests.harness import START


async def migrated(db) -> Database:
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    return database


async def sighting(database: Database, platform: str, event_id: str, at=START) -> bool:
    async with database.session() as session:
        first = await first_sighting(session, platform, event_id, at)
        await session.commit()
        return first


async def test_an_event_id_is_new_the_first_time_only(db):
    """The first sighting of an event id says so; a second, in another session, is a repeat."""
    database = await migrated(db)
    try:
        assert await sighting(database, "slack", "Ev01") is True
        assert await sighting(database, "slack", "Ev01") is False
    finally:
        await database.close()


async def test_the_same_id_on_another_platform_is_new(db):
    """Event ids are unique per platform, not across platforms."""
    database = await migrated(db)
    try:
        assert await sighting(database, "slack", "Ev01") is True
        assert await sighting(database, "discord", "Ev01") is True
    finally:
        await database.close()


async def test_a_repeat_leaves_the_session_usable(db):
    """After a repeat the same session can still record another id and commit it."""
    database = await migrated(db)
    try:
        await sighting(database, "slack", "Ev01")
        async with database.session() as session:
            assert await first_sighting(session, "slack", "Ev01", START) is False
            assert await first_sighting(session, "slack", "Ev02", START) is True
            await session.commit()
        async with database.session() as session:
            ids = (await session.exec(select(PlatformEvent.event_id))).all()
        assert sorted(ids) == ["Ev01", "Ev02"]
    finally:
        await database.close()


async def test_old_ids_are_forgotten_and_recent_ones_kept(db):
    """Ids seen more than a day ago are purged; a newer one stays a repeat."""
    database = await migrated(db)
    try:
        await sighting(database, "slack", "old", at=START)
        await sighting(database, "slack", "new", at=START + KEEP_FOR)
        async with database.session() as session:
            purged = await forget_old_events(session, START + KEEP_FOR + timedelta(minutes=1))
            await session.commit()
        assert purged == 1
        assert await sighting(database, "slack", "new") is False
        assert await sighting(database, "slack", "old") is True
    finally:
        await database.close()
