"""Platform events already handled, so a platform's retry of one is handled once.

Slack resends an event it thinks went unanswered (``X-Slack-Retry-Num``, the same ``event_id``),
perhaps to another instance behind the load balancer; Discord may deliver an interaction again
after a resume, or to each instance holding a gateway connection. The core records the id in the
request's own transaction (``Core._unit``): the first to commit handles it, and the unique key
makes every other attempt a repeat. Rows are only needed for as long as a platform retries
(minutes), so a due job forgets them after ``KEEP_FOR``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Index, UniqueConstraint, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.types import UTCDateTime

KEEP_FOR = timedelta(days=1)  # far longer than any platform keeps retrying an event


class PlatformEvent(SQLModel, table=True):
    """One event id a platform sent us, and when it was first seen."""

    __tablename__ = "platform_event"
    __table_args__ = (
        UniqueConstraint("platform", "event_id", name="uq_platform_event"),
        Index("ix_platform_event_seen_at", "seen_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=20)
    event_id: str = Field(max_length=100)
    seen_at: datetime = Field(sa_type=UTCDateTime)


async def first_sighting(
    session: AsyncSession, platform: str, event_id: str, now: datetime
) -> bool:
    """Record `event_id`; True the first time, False for a repeat (from any instance).

    The caller commits. A repeat leaves the session usable (the insert is in a savepoint).
    """
    try:
        async with session.begin_nested():
            session.add(PlatformEvent(platform=platform, event_id=event_id[:100], seen_at=now))
            await session.flush()
    except IntegrityError:
        return False
    return True


async def forget_old_events(session: AsyncSession, now: datetime) -> int:
    """Delete event ids seen more than `KEEP_FOR` ago; return how many. The caller commits."""
    result = await session.exec(
        delete(PlatformEvent).where(col(PlatformEvent.seen_at) < now - KEEP_FOR)
    )
    return result.rowcount or 0


async def oldest_event_seen(session: AsyncSession) -> datetime | None:
    """When the oldest event id still kept was first seen."""
    return (await session.exec(select(func.min(PlatformEvent.seen_at)))).first()
