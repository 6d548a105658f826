"""What is stored about one member, where it lives, and how it is erased or purged.

``MEMBER_COLUMNS`` names every column that points at a member and what erasing them does to it;
a test checks it against the tables, so a new table that stores someone cannot be forgotten here.
Erasing deletes the member's own rows and leaves their support cases as anonymous shells: the
case number, its times and its audit steps stay (coaches' counts and the audit trail need them),
while the member's words, feedback, any kept transcript and every link to them go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import and_, delete, or_, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.checkin import CheckinSubscription, CheckinWeek
from storage.db import Database
from storage.events import Event, EventDraft, EventRsvp, EventSeries
from storage.models import Identity, Member, OutboxMessage
from storage.support import (
    CaseEvent,
    CaseMessage,
    CaseStatus,
    CoachProfile,
    SupportCase,
    SupportOffer,
)

log = structlog.get_logger("headsup.privacy")

BATCH = 200  # rows changed per transaction by the retention purge

# (table, column) → what erasing the member does there: "delete" the row, or "null" the link.
MEMBER_COLUMNS: dict[tuple[str, str], str] = {
    ("member", "id"): "delete",
    ("identity", "member_id"): "delete",
    ("outbox", "member_id"): "delete",
    ("checkin_subscription", "member_id"): "delete",
    ("checkin_week", "member_id"): "delete",
    ("support_case", "member_id"): "null",  # the case stays, without words or identity
    ("support_case", "coach_member_id"): "null",
    ("support_offer", "coach_member_id"): "delete",
    ("coach_profile", "member_id"): "delete",
    ("support_case_event", "actor_member_id"): "null",
    ("event_series", "created_by"): "null",
    ("event", "created_by"): "null",
    ("event_rsvp", "member_id"): "delete",
    ("event_draft", "member_id"): "delete",
}


@dataclass
class Erased:
    """What erasing one member removed, as counts (safe to log), and the events whose reply
    counts changed (their announcements need refreshing)."""

    counts: dict[str, int] = field(default_factory=dict)
    rsvp_event_ids: list[int] = field(default_factory=list)

    def add(self, name: str, rowcount: int | None) -> None:
        self.counts[name] = self.counts.get(name, 0) + (rowcount or 0)


async def erase_member(session: AsyncSession, member_id: int) -> Erased:
    """Delete every row about `member_id` and cut every link to them, in the caller's session.

    The caller deals first with what needs a person told (an open case, cases they coach) and
    commits afterwards. Deleting the member row would cascade most of this anyway; each table is
    named here so the erasure does not depend on the database enforcing foreign keys.
    """
    erased = Erased()
    own_cases = select(SupportCase.id).where(SupportCase.member_id == member_id)

    # Support, as the member: drafts go; other cases become anonymous shells.
    erased.add(
        "case_messages",
        (
            await session.exec(delete(CaseMessage).where(col(CaseMessage.case_id).in_(own_cases)))
        ).rowcount,
    )
    erased.add(
        "drafts",
        (
            await session.exec(
                delete(SupportCase).where(
                    col(SupportCase.member_id) == member_id,
                    col(SupportCase.status) == CaseStatus.DRAFT,
                )
            )
        ).rowcount,
    )
    erased.add(
        "cases_anonymised",
        (
            await session.exec(
                update(SupportCase)
                .where(col(SupportCase.member_id) == member_id)
                .values(
                    member_id=None,
                    words=None,
                    share_name=False,
                    feedback=None,
                    followup_due_at=None,
                    followup_sent_at=None,
                    followup_declined=False,
                )
            )
        ).rowcount,
    )
    erased.add(
        "audit_steps_anonymised",
        (
            await session.exec(
                update(CaseEvent)
                .where(col(CaseEvent.actor_member_id) == member_id)
                .values(actor_member_id=None, detail="")
            )
        ).rowcount,
    )

    # Support, as a coach: the cases they coached keep their numbers and times, not the coach,
    # and a kept transcript loses the coach's own lines (the member's stay: they are the
    # member's words, in the member's record).
    coached = select(SupportCase.id).where(SupportCase.coach_member_id == member_id)
    erased.add("case_messages", await drop_coach_lines(session, coached))
    await session.exec(
        update(SupportCase)
        .where(col(SupportCase.coach_member_id) == member_id)
        .values(coach_member_id=None)
    )
    erased.add(
        "offers",
        (
            await session.exec(
                delete(SupportOffer).where(col(SupportOffer.coach_member_id) == member_id)
            )
        ).rowcount,
    )
    erased.add(
        "coach_profile",
        (
            await session.exec(delete(CoachProfile).where(col(CoachProfile.member_id) == member_id))
        ).rowcount,
    )

    # Check-ins.
    erased.add(
        "checkin_weeks",
        (
            await session.exec(delete(CheckinWeek).where(col(CheckinWeek.member_id) == member_id))
        ).rowcount,
    )
    erased.add(
        "checkin_subscription",
        (
            await session.exec(
                delete(CheckinSubscription).where(col(CheckinSubscription.member_id) == member_id)
            )
        ).rowcount,
    )

    # Events: their replies and unfinished edits go; events they created stay, unattributed.
    erased.rsvp_event_ids = list(
        (
            await session.exec(
                select(EventRsvp.event_id).where(col(EventRsvp.member_id) == member_id)
            )
        ).all()
    )
    erased.add(
        "rsvps",
        (
            await session.exec(delete(EventRsvp).where(col(EventRsvp.member_id) == member_id))
        ).rowcount,
    )
    erased.add(
        "event_drafts",
        (
            await session.exec(delete(EventDraft).where(col(EventDraft.member_id) == member_id))
        ).rowcount,
    )
    for table in (Event, EventSeries):
        await session.exec(
            update(table).where(col(table.created_by) == member_id).values(created_by=None)
        )

    # Messages to them, sent or waiting, whichever identity they were addressed to.
    identities = (
        await session.exec(select(Identity).where(col(Identity.member_id) == member_id))
    ).all()
    addressed = [
        and_(
            col(OutboxMessage.kind) == "dm",
            col(OutboxMessage.platform) == i.platform,
            col(OutboxMessage.recipient) == i.user_id,
        )
        for i in identities
    ]
    erased.add(
        "outbox",
        (
            await session.exec(
                delete(OutboxMessage).where(
                    or_(col(OutboxMessage.member_id) == member_id, *addressed)
                )
            )
        ).rowcount,
    )

    erased.add(
        "identities",
        (await session.exec(delete(Identity).where(col(Identity.member_id) == member_id))).rowcount,
    )
    erased.add(
        "member",
        (await session.exec(delete(Member).where(col(Member.id) == member_id))).rowcount,
    )
    return erased


async def drop_coach_lines(session: AsyncSession, case_ids) -> int:
    """Delete the coach's lines from the kept transcripts of `case_ids` (a list or a select):
    a departing coach's words go with them."""
    result = await session.exec(
        delete(CaseMessage).where(
            col(CaseMessage.case_id).in_(case_ids), col(CaseMessage.sender) == "coach"
        )
    )
    return result.rowcount or 0


async def checkpoint(database: Database, mode: str = "TRUNCATE") -> None:
    """On SQLite, copy the write-ahead log into the database file (and, with TRUNCATE, empty the
    log), so deleted rows are gone from both files: ``secure_delete`` zeroes them in the
    database file. PostgreSQL frees deleted rows' space at its next VACUUM; nothing to do here.

    TRUNCATE waits (up to the busy timeout) for readers of older pages; PASSIVE never waits. A
    checkpoint that cannot finish now is completed by a later one, or when the database closes.
    """
    if database.dialect != "sqlite":
        return
    assert mode in ("PASSIVE", "TRUNCATE")
    try:
        async with database.engine.connect() as conn:
            # On the driver's own connection: a checkpoint can't run inside the transaction
            # SQLAlchemy would begin (BEGIN IMMEDIATE, storage/db.py).
            raw = await conn.get_raw_connection()
            cursor = await raw.driver_connection.execute(f"PRAGMA wal_checkpoint({mode})")
            busy, *_ = await cursor.fetchone()
            await cursor.close()
    except Exception as exc:
        log.warning("privacy.checkpoint_failed", error=type(exc).__name__)
        return
    if busy:
        log.warning("privacy.checkpoint_incomplete")


# --- retention ---------------------------------------------------------------------------------


def _note_written_before(cutoff: datetime):
    """A week's note counts from when the week was answered, or else from when it opened."""
    return or_(
        and_(col(CheckinWeek.answered_at).is_not(None), col(CheckinWeek.answered_at) <= cutoff),
        and_(col(CheckinWeek.answered_at).is_(None), col(CheckinWeek.opens_at) <= cutoff),
    )


def _closed_before(cutoff: datetime):
    return and_(
        col(SupportCase.status) == CaseStatus.CLOSED,
        col(SupportCase.closed_at).is_not(None),
        col(SupportCase.closed_at) <= cutoff,
    )


async def purge_notes(session: AsyncSession, cutoff: datetime, limit: int = BATCH) -> int:
    """Delete up to `limit` check-in notes written at or before `cutoff`; return how many."""
    ids = (
        await session.exec(
            select(CheckinWeek.id)
            .where(col(CheckinWeek.note).is_not(None), _note_written_before(cutoff))
            .order_by(col(CheckinWeek.id))
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    await session.exec(
        update(CheckinWeek).where(col(CheckinWeek.id).in_(ids)).values(note=None, note_at=None)
    )
    return len(ids)


async def purge_case_words(session: AsyncSession, cutoff: datetime, limit: int = BATCH) -> int:
    """Delete the words of up to `limit` cases closed at or before `cutoff`; return how many."""
    ids = (
        await session.exec(
            select(SupportCase.id)
            .where(col(SupportCase.words).is_not(None), _closed_before(cutoff))
            .order_by(col(SupportCase.id))
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    await session.exec(update(SupportCase).where(col(SupportCase.id).in_(ids)).values(words=None))
    return len(ids)


async def purge_transcripts(session: AsyncSession, cutoff: datetime, limit: int = BATCH) -> int:
    """Delete up to `limit` kept messages of cases closed at or before `cutoff`."""
    closed = select(SupportCase.id).where(_closed_before(cutoff))
    ids = (
        await session.exec(
            select(CaseMessage.id)
            .where(col(CaseMessage.case_id).in_(closed))
            .order_by(col(CaseMessage.id))
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    await session.exec(delete(CaseMessage).where(col(CaseMessage.id).in_(ids)))
    return len(ids)


async def oldest_note(session: AsyncSession) -> datetime | None:
    """When the oldest stored note's clock started (see `_note_written_before`)."""
    answered = (
        await session.exec(
            select(func.min(CheckinWeek.answered_at)).where(col(CheckinWeek.note).is_not(None))
        )
    ).first()
    unanswered = (
        await session.exec(
            select(func.min(CheckinWeek.opens_at)).where(
                col(CheckinWeek.note).is_not(None), col(CheckinWeek.answered_at).is_(None)
            )
        )
    ).first()
    return min((t for t in (answered, unanswered) if t is not None), default=None)


async def oldest_closed_case_text(session: AsyncSession) -> datetime | None:
    """When the earliest-closed case that still has words or kept messages was closed."""
    kept = select(CaseMessage.case_id)
    return (
        await session.exec(
            select(func.min(SupportCase.closed_at)).where(
                col(SupportCase.status) == CaseStatus.CLOSED,
                or_(col(SupportCase.words).is_not(None), col(SupportCase.id).in_(kept)),
            )
        )
    ).first()
