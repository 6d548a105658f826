"""Alembic migrations: an empty database reaches head, and head is exactly the models."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

import storage.tables  # noqa: F401  (registers every table on the metadata)
from storage.db import Database, alembic_config

EXPECTED_TABLES = {"member", "identity", "outbox"}


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def migrated(db) -> Database:
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    return database


async def current_revisions(database: Database) -> list[str]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return [r[0] for r in rows]


async def test_head_is_one_revision_from_the_foundation_on():
    """The script directory has a single head, 0001 or later."""
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    assert script.get_revision("0001") is not None
    assert "0001" in {r.revision for r in script.iterate_revisions(head_revision(), "base")}


async def test_upgrade_of_an_empty_database_reaches_head(db):
    """An empty database is migrated to the script directory's head."""
    database = await migrated(db)
    try:
        assert await current_revisions(database) == [head_revision()]
    finally:
        await database.close()


async def test_upgrade_creates_the_foundation_tables(db):
    """The member, identity and outbox tables exist after upgrading."""
    database = await migrated(db)
    try:
        async with database.engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert names >= EXPECTED_TABLES | {"alembic_version"}
    finally:
        await database.close()


def schema_diff(connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, SQLModel.metadata)


async def test_migrated_schema_matches_the_models_exactly(db):
    """Autogenerate finds no difference between the migrated schema and the SQLModel metadata."""
    database = await migrated(db)
    try:
        async with database.engine.connect() as conn:
            differences = await conn.run_sync(schema_diff)
        assert differences == []
    finally:
        await database.close()


async def test_schema_comparison_notices_drift(db):
    """The comparison is not blind: a dropped index and a stray column show up as differences."""
    database = await migrated(db)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_outbox_message_key"))
            await conn.execute(text("ALTER TABLE member ADD COLUMN stray INTEGER"))
        async with database.engine.connect() as conn:
            differences = await conn.run_sync(schema_diff)
        kinds = {(d[0], d[2] if d[0] == "remove_column" else d[1].name) for d in differences}
        assert kinds == {("remove_column", "member"), ("add_index", "ix_outbox_message_key")}
    finally:
        await database.close()


async def test_models_register_every_migrated_table():
    """The metadata the comparison uses holds every foundation table (storage.tables imports)."""
    assert set(SQLModel.metadata.tables) >= EXPECTED_TABLES


async def test_upgrading_twice_is_harmless(db):
    """A second upgrade changes nothing and keeps the data already stored."""
    database = await migrated(db)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO member (name, roles, created_at, last_seen_at) "
                    "VALUES ('alice', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        await database.upgrade()
        assert await current_revisions(database) == [head_revision()]
        async with database.engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM member"))).scalars().all()
        assert names == ["alice"]
    finally:
        await database.close()


async def test_upgrading_from_a_second_process_is_harmless(db):
    """A fresh Database object on an already-migrated database upgrades without error."""
    first = await migrated(db)
    await first.close()
    second = await migrated(db)
    try:
        assert await current_revisions(second) == [head_revision()]
    finally:
        await second.close()


async def sqlite_pragma(tmp_path, name: str):
    """The pragma's value on a session connection of a freshly migrated SQLite database."""
    database = Database(f"sqlite:///{tmp_path / 'headsup.db'}")
    await database.upgrade()
    try:
        async with database.session() as session:
            return (await session.exec(text(f"PRAGMA {name}"))).scalar_one()
    finally:
        await database.close()


async def test_sqlite_uses_write_ahead_logging(tmp_path):
    """A SQLite session connection is in WAL journal mode."""
    assert str(await sqlite_pragma(tmp_path, "journal_mode")).lower() == "wal"


async def test_sqlite_enforces_foreign_keys(tmp_path):
    """A SQLite session connection enforces foreign keys."""
    assert await sqlite_pragma(tmp_path, "foreign_keys") == 1


async def test_sqlite_overwrites_deleted_content(tmp_path):
    """A SQLite session connection has secure_delete on, so deleted notes do not linger."""
    assert await sqlite_pragma(tmp_path, "secure_delete") == 1


async def test_sqlite_waits_for_a_busy_database(tmp_path):
    """A SQLite session connection waits for another writer instead of failing at once."""
    assert await sqlite_pragma(tmp_path, "busy_timeout") >= 1000


async def test_an_identity_without_its_member_is_refused(db):
    """Foreign keys really bite (on SQLite too): an identity for a missing member is refused."""
    database = await migrated(db)
    try:
        with pytest.raises(IntegrityError):
            async with database.engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO identity (member_id, platform, user_id, display_name) "
                        "VALUES (999, 'console', 'ghost', '')"
                    )
                )
    finally:
        await database.close()


async def test_instances_starting_together_migrate_one_after_another(db):
    """Several instances upgrading an empty database at the same moment all succeed (the first
    migrates; the rest wait for it, then find nothing to do)."""
    if db.backend != "postgresql":
        pytest.skip("several instances share a database on PostgreSQL only")
    databases = [Database(db.url, schema=db.schema) for _ in range(3)]
    try:
        await asyncio.gather(*(d.upgrade() for d in databases))
        assert await current_revisions(databases[0]) == [head_revision()]
    finally:
        for database in databases:
            await database.close()
