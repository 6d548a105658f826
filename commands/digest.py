"""The daily digest: at 08:00 network time the coordinators' channel gets the support cases still
open — each one's number, where it stands, how long it has been open, and whether a coach has it.
Never a member's name or words: those stay with the case's coach.

A morning with nothing open posts nothing; each new case already reaches the right people as it
happens, so the digest is only a reminder of what is still in hand.

Exactly once a day, across restarts and instances: the post's outbox rows carry the key
``digest:YYYY-MM-DD``, checked and written in one transaction that only one instance at a time
may hold (a PostgreSQL advisory lock; SQLite's single writer).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import structlog
from sqlalchemy import false, text, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import Services
from bot.ui import MAX_TEXT, Channel, Message, ToChannel
from commands.registry import registry
from commands.schedule import local_moment
from storage.models import OutboxMessage
from storage.support import CaseStatus, SupportCase, case_number

log = structlog.get_logger("headsup.digest")

DIGEST_AT = time(8, 0)  # network time
# A digest is still worth posting this long after 08:00 (a restart around then); later than
# that, the day is skipped rather than posted in the middle of someone's afternoon.
POST_WITHIN = timedelta(hours=1)
# The digest's PostgreSQL advisory lock, one per schema (networks sharing a database, and test
# runs, never wait on each other); held until the transaction ends.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('headsup.digest:' || current_schema()))")

# Most in need of a person first: nobody has it, then offered to a coach, then with a coach.
STATUS_ORDER = (CaseStatus.ESCALATED, CaseStatus.WAITING, CaseStatus.ACTIVE)
STATUS_WORDS = {
    CaseStatus.ESCALATED: "no coach yet — waiting for someone to take it",
    CaseStatus.WAITING: "offered to a coach, not yet accepted",
    CaseStatus.ACTIVE: "a coach has it",
}


def message_key(day: date) -> str:
    """The outbox key that marks `day`'s digest as posted."""
    return f"digest:{day.isoformat()}"


def due_day(now: datetime, services: Services) -> date | None:
    """The network-local day whose digest may be posted at `now`, if any."""
    zone = services.settings.network.tzinfo
    day = now.astimezone(zone).date()
    at = local_moment(day, DIGEST_AT, zone)
    return day if at <= now < at + POST_WITHIN else None


async def next_digest(services: Services) -> datetime | None:
    """The next 08:00 network time after now (for the console's `:advance`)."""
    zone = services.settings.network.tzinfo
    now = services.clock.now()
    day = now.astimezone(zone).date()
    for extra in range(3):  # 08:00 comes within two days, whatever the clocks do
        moment = local_moment(day + timedelta(days=extra), DIGEST_AT, zone)
        if moment > now:
            return moment
    return None


def describe_age(delta: timedelta) -> str:
    """How long a case has been open, roughly: "35 minutes", "5 hours", "2 days 3 hours"."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)

    def unit(count: int, name: str) -> str:
        return f"{count} {name}{'' if count == 1 else 's'}"

    if days:
        return unit(days, "day") + (f" {unit(hours, 'hour')}" if hours else "")
    if hours:
        return unit(hours, "hour")
    return unit(minutes, "minute")


def digest_text(cases: list[tuple[int, str, bool, datetime]], now: datetime) -> str:
    """The digest for (case id, status, urgent, open since) rows, within one message."""
    count = len(cases)
    head = (
        "Good morning. One support request is open:"
        if count == 1
        else f"Good morning. {count} support requests are open:"
    )
    foot = (
        "Case numbers only — members' names and words stay with their coach. "
        "Thank you for keeping an eye on them."
    )
    lines: list[str] = []
    budget = MAX_TEXT - len(head) - len(foot) - 40  # room for "…and N more"
    for shown, (case_id, status, urgent, since) in enumerate(cases):
        line = (
            f"• {case_number(case_id)}{' (urgent)' if urgent else ''} — "
            f"{STATUS_WORDS.get(status, status)}; open {describe_age(now - since)}"
        )
        if len(line) + 1 > budget:
            lines.append(f"…and {count - shown} more.")
            break
        budget -= len(line) + 1
        lines.append(line)
    return "\n".join([head, *lines, foot])


async def _open_cases(session: AsyncSession) -> list[tuple[int, str, bool, datetime]]:
    rows = (
        await session.exec(
            select(
                SupportCase.id,
                SupportCase.status,
                SupportCase.urgent,
                func.coalesce(SupportCase.connected_at, SupportCase.created_at),
            ).where(col(SupportCase.status).in_(CaseStatus.OPEN))
        )
    ).all()
    cases = [(int(i), s, bool(u), since) for i, s, u, since in rows if i is not None]
    cases.sort(key=lambda c: (STATUS_ORDER.index(c[1]), c[3], c[0]))
    return cases


async def _posted(session: AsyncSession, key: str) -> bool:
    found = await session.exec(
        select(OutboxMessage.id).where(OutboxMessage.message_key == key).limit(1)
    )
    return found.first() is not None


async def _one_at_a_time(session: AsyncSession, dialect: str) -> None:
    """Hold the digest's lock until this transaction ends, so a second instance checking for
    today's digest waits, then sees the first one's rows."""
    if dialect == "postgresql":
        await session.exec(_LOCK)
    else:
        # SQLite: a write as the transaction's first statement takes the database's one write
        # lock (the UPDATE touches no row); another writer waits on busy_timeout until commit.
        await session.exec(
            update(OutboxMessage)
            .where(false())
            .values(id=OutboxMessage.id)
            .execution_options(synchronize_session=False)
        )


@registry.due("digest.daily", next_due=next_digest)
async def post_digest(services: Services, now: datetime) -> int:
    """At 08:00 network time, tell the coordinators which support cases are still open."""
    day = due_day(now, services)
    if day is None:
        return 0
    key = message_key(day)
    async with services.database.session() as session:  # the cheap look, without the lock
        if await _posted(session, key) or not await _open_cases(session):
            return 0
    async with services.database.session() as session:
        await _one_at_a_time(session, services.database.dialect)
        if await _posted(session, key):
            await session.rollback()
            return 0
        cases = await _open_cases(session)
        if not cases:
            await session.rollback()
            return 0
        rows = await services.outbox.send(
            session,
            now,
            ToChannel(Channel.COORDINATORS),
            Message(digest_text(cases, now)),
            key=key,
        )
        await session.commit()
    if not rows:
        return 0  # no coordinators' channel anywhere
    log.info("digest.posted", day=day.isoformat(), cases=len(cases), platforms=len(rows))
    return 1
