"""The clock's heartbeat: APScheduler runs a short tick that asks each feature what fell due.

Features register due jobs on the command registry (``@registry.due``); each job claims its own
rows (a row is claimed once), so a tick that runs twice, late, or on two instances is harmless.
On PostgreSQL only one instance ticks at a time all the same: the one holding an advisory lock,
which PostgreSQL releases when that instance's connection dies, so another takes over at its
next tick.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.core import Services
from storage.db import Database

log = structlog.get_logger("headsup.scheduler")

TICK_SECONDS = 10

# One lock per schema, so networks (and test runs) sharing a PostgreSQL database don't collide.
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtext('headsup.tick:' || current_schema()))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtext('headsup.tick:' || current_schema()))")


class Leadership:
    """Whether this instance is the one that ticks. SQLite has one instance by nature; on
    PostgreSQL it is whoever holds a session-level advisory lock on a connection kept open."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection: AsyncConnection | None = None

    async def held(self) -> bool:
        """Hold the lock, or take it if nobody does; False while another instance has it."""
        if self.database.dialect != "postgresql":
            return True
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                return True
            except Exception as exc:  # our connection died, and the lock with it
                log.warning("tick.leadership_lost", error=type(exc).__name__)
                await self._drop()
        connection = await self.database.engine.connect()
        try:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            taken = (await connection.execute(_TRY_LOCK)).scalar()
        except BaseException:
            await connection.close()
            raise
        if not taken:
            await connection.close()
            return False
        self._connection = connection
        log.info("tick.leadership_taken")
        return True

    async def resign(self) -> None:
        """Let another instance tick (on a clean stop; a crash frees the lock by itself)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.execute(_UNLOCK)
            await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


class Ticker:
    """Runs every registered due job; `start` puts it on an APScheduler interval."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.leadership = Leadership(services.database)
        self._scheduler: AsyncIOScheduler | None = None

    async def tick(self) -> int:
        """Run each due job once for the current time; return how many things were done.
        Another instance leading means nothing to do here."""
        try:
            if not await self.leadership.held():
                return 0
        except Exception as exc:  # the database is down: the next tick tries again
            log.warning("tick.no_database", error=type(exc).__name__)
            return 0
        now = self.services.clock.now()
        done = 0
        for job in list(self.services.registry.due_jobs.values()):
            try:
                count = await job.run(self.services, now)
            except Exception as exc:
                # One feature failing must not stop the others; its rows stay due for next time.
                log.exception("tick.job_failed", job=job.name, error=type(exc).__name__)
                continue
            if count:
                log.info("tick.job_done", job=job.name, count=count)
            done += count
        return done

    async def next_due(self) -> datetime | None:
        """The earliest time any job has work, if any knows."""
        times = []
        for job in self.services.registry.due_jobs.values():
            if job.next_due is None:
                continue
            try:
                when = await job.next_due(self.services)
            except Exception as exc:
                log.exception("tick.next_due_failed", job=job.name, error=type(exc).__name__)
                continue
            if when is not None:
                times.append(when)
        return min(times, default=None)

    def start(self, interval_seconds: float = TICK_SECONDS) -> None:
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(
            self.tick,
            "interval",
            seconds=interval_seconds,
            id="tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def resign(self) -> None:
        """Hand the tick to another instance (call after `stop`)."""
        await self.leadership.resign()
