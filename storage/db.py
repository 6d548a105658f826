"""The async engine and session factory, for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT = 10.0  # seconds to open a PostgreSQL connection
COMMAND_TIMEOUT = 60.0  # seconds any one statement may take before it is abandoned


class DatabaseUnavailable(Exception):
    """The database cannot be reached; the message is one line, safe to show an operator."""


def async_url(url: str) -> URL:
    """Map the configured URL to its async driver: sqlite → aiosqlite, postgresql → asyncpg."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database backend {backend!r} (use sqlite or postgresql)")


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(str(url)).render_as_string(hide_password=True)


def sqlite_path(url: str | URL) -> Path | None:
    """The file behind a SQLite URL, or None for PostgreSQL and in-memory SQLite."""
    parsed = make_url(str(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_savepoint(conn, _name) -> None:
    # The driver begins a transaction only before a write, and a SAVEPOINT outside one starts
    # a transaction that its RELEASE commits: a rollback after it (a refused first command)
    # could not undo it. Begin first. Reads before the first write stay outside the
    # transaction, so readers never wait for a writer and a writer never trips on a stale read.
    if not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN")


class Database:
    """One engine for the process; a session per unit of work."""

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        self.url = async_url(url)
        self.schema = schema
        # hide_parameters: a database error quotes its statement, and its values are what
        # people wrote (names, titles, form fields); an error must never carry them into a log.
        kwargs: dict = {"echo": echo, "pool_pre_ping": True, "hide_parameters": True}
        if self.dialect == "postgresql":
            # The server drops a connection whose peer went silent (a crashed or partitioned
            # instance) within about a minute, releasing its advisory locks so another instance
            # takes over; and no query waits for ever on a connection that went dead.
            server_settings = {
                "tcp_keepalives_idle": "30",
                "tcp_keepalives_interval": "10",
                "tcp_keepalives_count": "3",
            }
            if schema:
                # Tests run each suite in its own schema so parallel runs never collide.
                server_settings["search_path"] = schema
            kwargs["connect_args"] = {
                "server_settings": server_settings,
                "timeout": CONNECT_TIMEOUT,
                "command_timeout": COMMAND_TIMEOUT,
            }
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "savepoint", _sqlite_savepoint)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that rolls back on error; the caller commits."""
        async with self._sessions() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    async def upgrade(self) -> None:
        """Apply every migration (Alembic); a SQLite file's folder must already exist."""
        path = sqlite_path(self.url)
        if path is not None and not path.parent.exists():
            raise DatabaseUnavailable(f"the folder for the database file {path} does not exist")
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade_on, self.schema)
        except (OSError, ConnectionError) as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database at {safe_url(self.url)}: {_reason(exc)}"
            ) from exc
        except Exception as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailable(
                    f"cannot reach the database at {safe_url(self.url)}: {_reason(exc)}"
                ) from exc
            raise

    async def ping(self) -> bool:
        """True when a trivial query succeeds."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None, schema: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    return cfg


def _upgrade_on(connection: Connection, schema: str | None) -> None:
    if connection.dialect.name == "postgresql":
        # Several instances starting at once migrate one after another: the first applies
        # what is new, the rest find nothing to do. The lock goes with the transaction.
        connection.execute(_MIGRATION_LOCK)
    command.upgrade(alembic_config(connection, schema), "head")


_MIGRATION_LOCK = text(
    "SELECT pg_advisory_xact_lock(hashtext('headsup.migrate:' || current_schema()))"
)


# SQLSTATEs that mean "the database is not there for us right now", not "this query is wrong":
# the server refuses the connection (08), the user or password is wrong (28), the database does
# not exist (3D), the server is shutting down, crashed or starting up (57P01-57P03), or it has
# no connection slot left (53300). asyncpg reports these as plain DBAPIErrors.
_CONNECTION_SQLSTATES = ("08", "28", "3D", "57P01", "57P02", "57P03", "53300")


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` says the database is unreachable or unavailable (so: try again later)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    return exc.connection_invalidated or sqlstate.startswith(_CONNECTION_SQLSTATES)


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for a connection failure."""
    inner = getattr(exc, "orig", None) or exc
    message = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return message[:200]
