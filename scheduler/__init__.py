"""The clock's heartbeat: APScheduler runs a short tick that asks each feature what fell due.

Features register due jobs on the command registry (``@registry.due``); each job claims its own
rows (a row is claimed once), so a tick that runs twice, late, or on two instances is harmless.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.core import Services

log = structlog.get_logger("headsup.scheduler")

TICK_SECONDS = 10


class Ticker:
    """Runs every registered due job; `start` puts it on an APScheduler interval."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._scheduler: AsyncIOScheduler | None = None

    async def tick(self) -> int:
        """Run each due job once for the current time; return how many things were done."""
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
