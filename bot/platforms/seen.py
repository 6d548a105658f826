"""Platform events already handled, remembered in the database, so a repeat is handled once.

Discord may deliver an interaction or a message twice (after a resume, or to each of two
instances that both hold a gateway connection); Slack resends an event it thinks went
unanswered, perhaps to another instance behind the load balancer. Whichever instance records an
event id first (``storage.platform_events``) handles it; every other sighting is a repeat.

A database that cannot be reached (or is too slow to say) never drops an event: it counts as a
first sighting, and the core then tells the person what it can. Old ids are forgotten now and
then, since platforms only repeat an event for minutes.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog

from storage.platform_events import first_sighting, forget_old_events

if TYPE_CHECKING:
    from bot.core import Services

log = structlog.get_logger("headsup.platforms")

PURGE_EVERY = 3600.0  # seconds between purges of old event ids


class SeenEvents:
    """One platform's record of the event ids it has handled, shared by every instance."""

    def __init__(
        self, services: Services, platform: str, *, purge_every: float = PURGE_EVERY
    ) -> None:
        self.services = services
        self.platform = platform
        self.purge_every = purge_every
        self._last_purge = 0.0
        self._pending: set[asyncio.Task[bool]] = set()

    async def first(self, event_id: Any, *, within: float | None = None) -> bool:
        """Record `event_id`; False for a repeat of one already handled (by any instance).

        An empty id, a database error, or no answer `within` seconds (when given) count as a
        first sighting. A late answer is still recorded, so a later repeat is recognised.
        """
        if not event_id:
            return True
        task = asyncio.ensure_future(self._record(str(event_id)))
        if within is not None:
            done, _ = await asyncio.wait({task}, timeout=within)
            if not done:
                log.warning(f"{self.platform}.event_not_recorded", error="timeout")
                self._pending.add(task)  # keep it referenced until it finishes
                task.add_done_callback(self._pending.discard)
                return True
        first = await task
        if not first:
            log.info(f"{self.platform}.repeat_ignored", event_id=str(event_id))
        elif time.monotonic() - self._last_purge > self.purge_every:
            await self.purge()
        return first

    async def _record(self, event_id: str) -> bool:
        services = self.services
        try:
            async with services.database.session() as session:
                first = await first_sighting(session, self.platform, event_id, services.clock.now())
                await session.commit()
        except Exception as exc:  # the core will say the database is down; don't drop the event
            log.warning(f"{self.platform}.event_not_recorded", error=type(exc).__name__)
            return True
        return first

    async def purge(self) -> int:
        """Forget ids seen long ago (``storage.platform_events.KEEP_FOR``); how many went."""
        self._last_purge = time.monotonic()
        services = self.services
        try:
            async with services.database.session() as session:
                purged = await forget_old_events(session, services.clock.now())
                await session.commit()
        except Exception as exc:
            log.warning(f"{self.platform}.purge_failed", error=type(exc).__name__)
            return 0
        if purged:
            log.info(f"{self.platform}.events_purged", count=purged)
        return purged
