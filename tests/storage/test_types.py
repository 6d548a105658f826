"""UTCDateTime: every timestamp comes back timezone-aware UTC, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlmodel import select

from storage.db import Database
from storage.models import Identity, Member
from storage.types import UTCDateTime

# 10:30 in New York in winter is 15:30 UTC.
NEW_YORK_TIME = datetime(2026, 1, 5, 10, 30, 15, 123456, tzinfo=ZoneInfo("America/New_York"))
SAME_IN_UTC = datetime(2026, 1, 5, 15, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def database(db):
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    yield database
    await database.close()


async def store_member(database: Database, created: datetime, seen: datetime) -> int:
    async with database.session() as session:
        member = Member(name="alice", created_at=created, last_seen_at=seen)
        session.add(member)
        await session.commit()
        assert member.id is not None
        return member.id


async def load_member(database: Database, member_id: int) -> Member:
    # A fresh session, so the values come from the database rather than the identity map.
    async with database.session() as session:
        return (await session.exec(select(Member).where(Member.id == member_id))).one()


async def test_a_non_utc_time_comes_back_as_the_same_instant_in_utc(database):
    """A New York time is read back equal to what was stored, with tzinfo UTC."""
    member_id = await store_member(database, NEW_YORK_TIME, NEW_YORK_TIME)
    member = await load_member(database, member_id)
    assert member.created_at == NEW_YORK_TIME
    assert member.created_at.tzinfo is UTC
    assert member.created_at.utcoffset() == timedelta(0)
    assert (member.created_at.hour, member.created_at.minute) == (15, 30)


async def test_microseconds_survive_the_round_trip(database):
    """The stored instant keeps its microseconds."""
    member_id = await store_member(database, SAME_IN_UTC, SAME_IN_UTC)
    member = await load_member(database, member_id)
    assert member.last_seen_at == SAME_IN_UTC
    assert member.last_seen_at.microsecond == 123456


async def test_a_fixed_offset_time_comes_back_in_utc(database):
    """A time with a plain +05:30 offset is normalised to UTC."""
    india = datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    member_id = await store_member(database, india, india)
    member = await load_member(database, member_id)
    assert member.created_at == datetime(2026, 6, 1, 3, 30, tzinfo=UTC)
    assert member.created_at.tzinfo is UTC


async def test_a_nullable_timestamp_stays_none(database):
    """A NULL timestamp reads back as None, not as some default time."""
    member_id = await store_member(database, SAME_IN_UTC, SAME_IN_UTC)
    async with database.session() as session:
        session.add(Identity(member_id=member_id, platform="console", user_id="alice"))
        await session.commit()
    async with database.session() as session:
        identity = (await session.exec(select(Identity))).one()
    assert identity.dm_failed_at is None


async def test_timestamps_compare_as_instants_in_queries(database):
    """A query bound with a non-UTC time selects by instant, not by wall-clock digits."""
    member_id = await store_member(database, SAME_IN_UTC, SAME_IN_UTC)
    just_before = (SAME_IN_UTC - timedelta(seconds=1)).astimezone(ZoneInfo("Asia/Tokyo"))
    just_after = (SAME_IN_UTC + timedelta(seconds=1)).astimezone(ZoneInfo("America/New_York"))
    async with database.session() as session:
        later = (await session.exec(select(Member.id).where(Member.created_at > just_before))).all()
        earlier = (
            await session.exec(select(Member.id).where(Member.created_at < just_after))
        ).all()
    assert later == [member_id]
    assert earlier == [member_id]


async def test_sqlite_stores_naive_utc(db, database):
    """On SQLite the stored text is the UTC wall-clock time (so ordering by text is by instant)."""
    if db.backend != "sqlite":
        pytest.skip("SQLite storage format")
    await store_member(database, NEW_YORK_TIME, NEW_YORK_TIME)
    async with database.session() as session:
        raw = (await session.exec(text("SELECT created_at FROM member"))).scalar_one()
    assert str(raw).startswith("2026-01-05 15:30:15")


async def test_a_naive_datetime_is_refused(database):
    """Storing a naive datetime fails instead of guessing its zone."""
    naive = datetime(2026, 1, 5, 9, 0)
    async with database.session() as session:
        session.add(Member(name="alice", created_at=naive, last_seen_at=SAME_IN_UTC))
        with pytest.raises(StatementError, match="naive datetime"):
            await session.commit()


async def test_a_naive_datetime_in_a_query_is_refused(database):
    """Comparing a column with a naive datetime fails too."""
    async with database.session() as session:
        with pytest.raises(StatementError, match="naive datetime"):
            await session.exec(select(Member).where(Member.created_at < datetime(2026, 1, 5)))


def test_bind_refuses_naive_directly():
    """The type itself refuses a naive datetime, whatever the dialect."""
    from sqlalchemy.dialects import postgresql, sqlite

    for dialect in (sqlite.dialect(), postgresql.dialect()):
        with pytest.raises(ValueError, match="naive"):
            UTCDateTime().process_bind_param(datetime(2026, 1, 5), dialect)


def test_bind_keeps_the_zone_for_postgresql_and_drops_it_for_sqlite():
    """PostgreSQL is handed an aware UTC value; SQLite a naive UTC one."""
    from sqlalchemy.dialects import postgresql, sqlite

    on_pg = UTCDateTime().process_bind_param(NEW_YORK_TIME, postgresql.dialect())
    on_sqlite = UTCDateTime().process_bind_param(NEW_YORK_TIME, sqlite.dialect())
    assert on_pg == SAME_IN_UTC and on_pg.tzinfo is UTC
    assert on_sqlite == SAME_IN_UTC.replace(tzinfo=None) and on_sqlite.tzinfo is None


def test_result_from_another_zone_is_converted_to_utc():
    """A zone-carrying value from the driver is handed back as the same instant in UTC."""
    from sqlalchemy.dialects import postgresql

    value = UTCDateTime().process_result_value(NEW_YORK_TIME, postgresql.dialect())
    assert value == SAME_IN_UTC
    assert value.tzinfo is UTC


def test_naive_result_is_read_as_utc():
    """A naive value from the driver (SQLite) is taken to be UTC, not local time."""
    from sqlalchemy.dialects import sqlite

    value = UTCDateTime().process_result_value(SAME_IN_UTC.replace(tzinfo=None), sqlite.dialect())
    assert value == SAME_IN_UTC
    assert value.tzinfo is UTC
