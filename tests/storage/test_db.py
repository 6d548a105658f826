"""The engine and session factory: URLs, reaching the database, and saying clearly when we can't."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.db import Database, DatabaseUnavailable, async_url, safe_url, sqlite_path
from tests.conftest import PG_URL

PASSWORD = "hunter2-very-secret"


async def close_after_failed_sqlite_connect(database: Database) -> None:
    """Close, then let aiosqlite's worker threads finish while the event loop is still open.

    After a failed connect aiosqlite stops its thread in the background; if the test's loop closes
    first, the thread dies with "Event loop is closed" and pytest warns about it.
    """
    await database.close()
    for _ in range(200):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


def test_async_url_maps_sqlite_to_aiosqlite():
    """A plain sqlite URL gets the aiosqlite driver and keeps its path."""
    url = async_url("sqlite:///data/headsup.db")
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == "data/headsup.db"


def test_async_url_replaces_another_sqlite_driver():
    """An explicit sync sqlite driver is swapped for aiosqlite."""
    assert async_url("sqlite+pysqlite:///x.db").drivername == "sqlite+aiosqlite"


def test_async_url_maps_postgresql_to_asyncpg():
    """A plain postgresql URL gets the asyncpg driver and keeps host, user, password and db."""
    url = async_url(f"postgresql://headsup:{PASSWORD}@db.internal:5433/headsup")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.internal",
        5433,
        "headsup",
        PASSWORD,
        "headsup",
    )


def test_async_url_replaces_another_postgresql_driver():
    """A psycopg URL is switched to asyncpg, the one driver the app runs on."""
    assert async_url("postgresql+psycopg://u@h/d").drivername == "postgresql+asyncpg"


@pytest.mark.parametrize("url", ["mysql://u@h/d", "mysql+aiomysql://u@h/d", "oracle://u@h/d"])
def test_async_url_rejects_other_backends(url):
    """Only sqlite and postgresql are supported; anything else is refused by name."""
    backend = make_url(url).get_backend_name()
    with pytest.raises(ValueError, match=backend):
        async_url(url)


def test_safe_url_hides_the_password():
    """The password never appears in the rendered URL, but the rest does."""
    shown = safe_url(f"postgresql+asyncpg://headsup:{PASSWORD}@db.internal/headsup")
    assert PASSWORD not in shown
    assert shown == "postgresql+asyncpg://headsup:***@db.internal/headsup"


def test_safe_url_accepts_a_url_object():
    """A SQLAlchemy URL object is rendered with its password hidden too."""
    shown = safe_url(async_url(f"postgresql://headsup:{PASSWORD}@db.internal/headsup"))
    assert PASSWORD not in shown
    assert "db.internal" in shown


def test_safe_url_leaves_a_url_without_password_alone():
    """A SQLite URL has nothing to hide and comes back unchanged."""
    assert safe_url("sqlite:///headsup.db") == "sqlite:///headsup.db"


def test_sqlite_path_of_a_relative_file():
    """A relative SQLite file URL gives that relative path."""
    assert sqlite_path("sqlite:///headsup.db") == Path("headsup.db")


def test_sqlite_path_of_an_absolute_file_with_async_driver():
    """An absolute path behind the aiosqlite driver is found too."""
    assert sqlite_path("sqlite+aiosqlite:////var/lib/headsup/headsup.db") == Path(
        "/var/lib/headsup/headsup.db"
    )


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "postgresql+asyncpg://u@h/headsup.db"]
)
def test_sqlite_path_is_none_without_a_file(url):
    """In-memory SQLite and PostgreSQL have no file."""
    assert sqlite_path(url) is None


def test_database_uses_the_async_driver():
    """A Database built from a plain URL runs on the async driver."""
    database = Database("sqlite:///unused.db")
    assert database.url.drivername == "sqlite+aiosqlite"
    assert database.dialect == "sqlite"


async def test_upgrade_on_unreachable_postgresql_says_so_in_one_line():
    """Upgrading a PostgreSQL nobody listens on raises DatabaseUnavailable: one line, host named,
    password hidden."""
    database = Database(f"postgresql://headsup:{PASSWORD}@127.0.0.1:1/headsup")
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await database.upgrade()
    finally:
        await database.close()
    message = str(raised.value)
    assert "\n" not in message
    assert "127.0.0.1:1" in message
    assert PASSWORD not in message
    assert message.startswith("cannot reach the database")


async def test_upgrade_with_a_missing_sqlite_folder_says_so(tmp_path):
    """Upgrading a SQLite file whose folder is missing raises DatabaseUnavailable naming it."""
    missing = tmp_path / "no-such-folder" / "headsup.db"
    database = Database(f"sqlite:///{missing}")
    try:
        with pytest.raises(
            DatabaseUnavailable, match=r"folder .*no-such-folder.* does not exist"
        ) as raised:
            await database.upgrade()
    finally:
        await database.close()
    assert "\n" not in str(raised.value)
    assert not missing.parent.exists()


async def test_upgrade_with_an_unopenable_sqlite_file_says_so(tmp_path):
    """A SQLite 'file' that is really a folder raises DatabaseUnavailable, not a traceback."""
    folder = tmp_path / "headsup.db"
    folder.mkdir()
    database = Database(f"sqlite:///{folder}")
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await database.upgrade()
    finally:
        await close_after_failed_sqlite_connect(database)
    assert "\n" not in str(raised.value)


@pytest.mark.skipif(not PG_URL, reason="needs HEADSUP_TEST_DATABASE_URL")
async def test_upgrade_on_a_missing_postgresql_database_says_so_in_one_line():
    """A reachable server without the configured database raises DatabaseUnavailable naming it."""
    url = make_url(PG_URL).set(database="headsup_no_such_database", password=PASSWORD)
    database = Database(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await database.upgrade()
    finally:
        await database.close()
    message = str(raised.value)
    assert "\n" not in message
    assert "headsup_no_such_database" in message
    assert PASSWORD not in message


@pytest.mark.skipif(not PG_URL, reason="needs HEADSUP_TEST_DATABASE_URL")
async def test_upgrade_with_an_unknown_postgresql_role_says_so_in_one_line():
    """A role the server does not know raises DatabaseUnavailable, not a DBAPI traceback."""
    url = make_url(PG_URL).set(username="headsup_no_such_role", password=PASSWORD)
    database = Database(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await database.upgrade()
    finally:
        await database.close()
    assert "\n" not in str(raised.value)
    assert PASSWORD not in str(raised.value)


async def test_ping_is_true_when_the_database_answers(db):
    """ping() answers True for a reachable database."""
    database = Database(db.url, schema=db.schema)
    try:
        assert await database.ping() is True
    finally:
        await database.close()


async def test_ping_is_false_when_the_database_is_unreachable():
    """ping() answers False, without raising, when nothing listens."""
    database = Database(f"postgresql://headsup:{PASSWORD}@127.0.0.1:1/headsup")
    try:
        assert await database.ping() is False
    finally:
        await database.close()


async def test_ping_is_false_for_a_sqlite_file_in_a_missing_folder(tmp_path):
    """ping() answers False when the SQLite file cannot be opened."""
    database = Database(f"sqlite:///{tmp_path / 'missing' / 'headsup.db'}")
    try:
        assert await database.ping() is False
    finally:
        await close_after_failed_sqlite_connect(database)


async def test_session_rolls_back_on_error(db):
    """A session that raises leaves nothing behind: its uncommitted work is rolled back."""
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    try:
        with pytest.raises(RuntimeError):
            async with database.session() as session:
                await session.exec(
                    text(
                        "INSERT INTO member (name, roles, created_at, last_seen_at) "
                        "VALUES ('alice', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    )
                )
                raise RuntimeError("boom")
        async with database.session() as session:
            count = (await session.exec(text("SELECT COUNT(*) FROM member"))).scalar_one()
        assert count == 0
    finally:
        await database.close()


async def test_a_database_error_never_quotes_the_values_it_was_given(db):
    """A failed statement's error names the statement, not the values (what people wrote)."""
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    try:
        with pytest.raises(Exception) as caught:
            async with database.session() as session:
                await session.exec(
                    text("INSERT INTO no_such_table (words) VALUES (:words)").bindparams(
                        words="the governors want me out"
                    )
                )
        assert "governors" not in str(caught.value)
        assert "no_such_table" in str(caught.value)  # the error itself is still there
    finally:
        await database.close()


async def test_postgresql_sessions_work_in_the_given_schema(db):
    """With a schema, PostgreSQL sessions resolve tables in it (so tests never collide)."""
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL schemas")
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    try:
        async with database.session() as session:
            current = (await session.exec(text("SELECT current_schema()"))).scalar_one()
            outbox = (
                await session.exec(text("SELECT to_regclass(:t)::text"), params={"t": "outbox"})
            ).scalar_one()
        assert current == db.schema
        assert outbox == "outbox"  # found via search_path, i.e. in the test's own schema
    finally:
        await database.close()


def test_connection_failure_reason_is_one_short_line():
    """However long the driver's error, the reason shown to an operator is its first line."""
    from storage.db import _reason

    error = OSError("connection refused\nDETAIL: " + "x" * 500)
    assert _reason(error) == "connection refused"
    assert len(_reason(OSError("y" * 1000))) == 200


def test_sqlite_pragmas_turn_on_secure_delete_even_if_off():
    """The connect hook sets secure_delete itself, not relying on how SQLite was compiled."""
    import sqlite3

    from storage.db import _sqlite_pragmas

    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("PRAGMA secure_delete=OFF")
        connection.execute("PRAGMA foreign_keys=OFF")
        _sqlite_pragmas(connection, None)
        assert connection.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        connection.close()


async def test_postgresql_connections_have_keepalives(db):
    """The server notices a silent peer within about a minute (its advisory locks then free)."""
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL's own connection settings")
    database = Database(db.url, schema=db.schema)
    try:
        async with database.engine.connect() as conn:
            idle = (await conn.execute(text("SHOW tcp_keepalives_idle"))).scalar_one()
        assert idle == "30"
    finally:
        await database.close()
