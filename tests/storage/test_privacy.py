"""Erasing one member's rows and purging old private text, straight against the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import SQLModel, col, func, select

import storage.tables  # noqa: F401  (every table in the metadata)
from bot.core import Actor
from storage.checkin import CheckinWeek
from storage.db import Database
from storage.events import Event, EventDraft, EventRsvp, EventSeries
from storage.members import member_for
from storage.models import Identity, Member, OutboxMessage
from storage.privacy import (
    MEMBER_COLUMNS,
    checkpoint,
    erase_member,
    oldest_closed_case_text,
    oldest_note,
    purge_case_words,
    purge_notes,
    purge_transcripts,
)
from storage.support import (
    CaseEvent,
    CaseMessage,
    CaseStatus,
    CoachProfile,
    SupportCase,
    SupportOffer,
)

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def database(db):
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    yield database
    await database.close()


async def add_member(database: Database, user_id: str) -> int:
    async with database.session() as session:
        member = await member_for(session, Actor("slack", user_id, f"{user_id} name"), NOW)
        await session.commit()
        assert member.id is not None
        return member.id


async def add(database: Database, *rows: SQLModel) -> None:
    async with database.session() as session:
        session.add_all(rows)
        await session.commit()


async def count(database: Database, table, *where) -> int:
    async with database.session() as session:
        query = select(func.count()).select_from(table)
        return (await session.exec(query.where(*where) if where else query)).one()


def week(member_id: int, opens: datetime, answered: datetime | None, note: str | None):
    return CheckinWeek(member_id=member_id, opens_at=opens, answered_at=answered, note=note)


def closed_case(member_id: int | None, closed: datetime | None, words: str | None = "token"):
    return SupportCase(
        member_id=member_id,
        status=CaseStatus.CLOSED if closed else CaseStatus.ACTIVE,
        words=words,
        created_at=NOW - 30 * DAY,
        closed_at=closed,
    )


# --- what erasing covers ----------


def test_every_column_pointing_at_a_member_is_handled():
    """Every column with a foreign key to member.id is one `erase_member` deletes or unlinks, so
    a new table that stores someone cannot be missed by forget-me."""
    found = {
        (table.name, column.name)
        for table in SQLModel.metadata.sorted_tables
        for column in table.columns
        if any(fk.column.table.name == "member" for fk in column.foreign_keys)
    } | {("member", "id")}
    assert found == set(MEMBER_COLUMNS)


async def test_erase_leaves_no_row_pointing_at_the_member(database: Database):
    """After erasing, no column listed in MEMBER_COLUMNS holds the member's id."""
    gone, kept = await add_member(database, "U-GONE"), await add_member(database, "U-KEPT")
    event = Event(
        title="t", link="https://x.example", starts_at=NOW, ends_at=NOW + DAY,
        created_by=gone, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    series = EventSeries(
        title="t", link="https://x.example", timezone="Europe/London", local_time="19:00",
        duration_minutes=60, until=(NOW + 30 * DAY).date(), created_by=gone, created_at=NOW,
        updated_at=NOW,
    )  # fmt: skip
    await add(database, event, series)
    assert event.id is not None
    own, coached = closed_case(gone, NOW), closed_case(kept, NOW)
    coached.coach_member_id = gone
    await add(database, own, coached)
    await add(
        database,
        week(gone, NOW, NOW, "note"),
        EventRsvp(event_id=event.id, member_id=gone, answer="going", answered_at=NOW),
        EventDraft(event_id=event.id, member_id=gone, form_values="{}", created_at=NOW),
        CoachProfile(member_id=gone, timezone="Europe/London", updated_at=NOW),
        CaseEvent(case_id=own.id, at=NOW, kind="created", actor_role="member",
                  actor_member_id=gone, detail="x"),
        OutboxMessage(created_at=NOW, platform="slack", kind="dm", recipient="U-GONE",
                      payload="", next_attempt_at=NOW),
        SupportOffer(case_id=coached.id, coach_member_id=gone, offered_at=NOW, due_at=NOW),
    )  # fmt: skip
    async with database.session() as session:
        await erase_member(session, gone)
        await session.commit()
    async with database.session() as session:
        conn = await session.connection()
        for (table_name, column_name), _ in MEMBER_COLUMNS.items():
            table = SQLModel.metadata.tables[table_name]
            rows = await conn.execute(select(func.count()).where(table.c[column_name] == gone))
            assert rows.scalar_one() == 0, table_name
    assert await count(database, OutboxMessage) == 0  # addressed by user id, not member id
    assert await count(database, Member) == 1 and await count(database, Identity) == 1


async def test_erase_keeps_the_members_cases_as_anonymous_shells(database: Database):
    """A closed case stays, without member, words, feedback or transcript; a draft goes."""
    gone = await add_member(database, "U-GONE")
    shell = closed_case(gone, NOW)
    shell.feedback = 4
    draft = SupportCase(member_id=gone, status=CaseStatus.DRAFT, words="w", created_at=NOW)
    await add(database, shell, draft)
    await add(database, CaseMessage(case_id=shell.id, at=NOW, sender="member", text="t"))
    async with database.session() as session:
        await erase_member(session, gone)
        await session.commit()
    async with database.session() as session:
        [left] = (await session.exec(select(SupportCase))).all()
    assert (left.id, left.member_id, left.words, left.feedback) == (shell.id, None, None, None)
    assert left.closed_at == NOW
    assert await count(database, CaseMessage) == 0


async def test_erase_removes_a_coachs_lines_from_kept_transcripts(database: Database):
    """A forgotten coach's relayed words go from the cases they coached; the member's stay."""
    coach, member = await add_member(database, "U-COACH"), await add_member(database, "U-MEMBER")
    case = closed_case(member, NOW)
    case.coach_member_id = coach
    await add(database, case)
    await add(
        database,
        CaseMessage(case_id=case.id, at=NOW, sender="member", text="member's words"),
        CaseMessage(case_id=case.id, at=NOW, sender="coach", text="coach's words"),
    )
    async with database.session() as session:
        await erase_member(session, coach)
        await session.commit()
    async with database.session() as session:
        left = (await session.exec(select(CaseMessage))).all()
    assert [(m.sender, m.text) for m in left] == [("member", "member's words")]


async def test_erase_leaves_other_members_alone(database: Database):
    """Another member's week, case and identity are untouched."""
    gone, kept = await add_member(database, "U-GONE"), await add_member(database, "U-KEPT")
    await add(database, week(kept, NOW, NOW, "theirs"), closed_case(kept, NOW, "their words"))
    async with database.session() as session:
        await erase_member(session, gone)
        await session.commit()
    assert await count(database, CheckinWeek, col(CheckinWeek.note) == "theirs") == 1
    assert await count(database, SupportCase, col(SupportCase.member_id) == kept) == 1
    assert await count(database, Identity, col(Identity.user_id) == "U-KEPT") == 1


# --- retention ----------


async def test_purge_notes_deletes_only_notes_written_before_the_cutoff(database: Database):
    """A note answered before the cutoff goes; one answered after stays; the answer stays."""
    member = await add_member(database, "U1")
    await add(
        database,
        week(member, NOW - 10 * DAY, NOW - 9 * DAY, "old"),
        week(member, NOW - 3 * DAY, NOW - 2 * DAY, "new"),
    )
    async with database.session() as session:
        assert await purge_notes(session, NOW - 5 * DAY) == 1
        await session.commit()
    async with database.session() as session:
        notes = (await session.exec(select(CheckinWeek.note).order_by(CheckinWeek.opens_at))).all()
    assert notes == [None, "new"]


async def test_purge_notes_counts_an_unanswered_week_from_its_opening(database: Database):
    """A note on a week never answered is dated by when the week opened."""
    member = await add_member(database, "U1")
    await add(database, week(member, NOW - 10 * DAY, None, "old"))
    async with database.session() as session:
        assert await purge_notes(session, NOW - 11 * DAY) == 0
        assert await purge_notes(session, NOW - 9 * DAY) == 1


async def test_purge_notes_takes_at_most_a_batch(database: Database):
    """With a limit of 2, three old notes need two runs."""
    member = await add_member(database, "U1")
    await add(database, *(week(member, NOW - (10 + i) * DAY, None, "n") for i in range(3)))
    async with database.session() as session:
        assert await purge_notes(session, NOW, limit=2) == 2
        assert await purge_notes(session, NOW, limit=2) == 1
        assert await purge_notes(session, NOW, limit=2) == 0


async def test_purge_case_words_only_for_cases_closed_before_the_cutoff(database: Database):
    """Words of a case closed long ago go; of one closed lately, or still open, stay."""
    member = await add_member(database, "U1")
    await add(
        database,
        closed_case(member, NOW - 100 * DAY),
        closed_case(member, NOW - 10 * DAY),
        closed_case(member, None),
    )
    async with database.session() as session:
        assert await purge_case_words(session, NOW - 90 * DAY) == 1
        await session.commit()
    assert await count(database, SupportCase, col(SupportCase.words).is_(None)) == 1
    assert await count(database, SupportCase) == 3


async def test_purge_transcripts_only_for_cases_closed_before_the_cutoff(database: Database):
    """Kept messages of an old closed case go; those of an open case stay."""
    old, open_ = closed_case(None, NOW - 100 * DAY), closed_case(None, None)
    await add(database, old, open_)
    long_ago = NOW - 200 * DAY
    await add(
        database,
        *(CaseMessage(case_id=c.id, at=long_ago, sender="coach", text="t") for c in (old, open_)),
    )
    async with database.session() as session:
        assert await purge_transcripts(session, NOW - 90 * DAY) == 1
        await session.commit()
    assert await count(database, CaseMessage, col(CaseMessage.case_id) == open_.id) == 1


async def test_oldest_times_say_when_the_next_purge_falls_due(database: Database):
    """The oldest note's answer time and the earliest close of a case with text are found."""
    member = await add_member(database, "U1")
    assert await _oldest(database) == (None, None)
    await add(
        database,
        week(member, NOW - 5 * DAY, NOW - 4 * DAY, "n"),
        week(member, NOW - 20 * DAY, NOW - 19 * DAY, None),
        closed_case(member, NOW - 7 * DAY),
        closed_case(member, NOW - 30 * DAY, words=None),
    )
    assert await _oldest(database) == (NOW - 4 * DAY, NOW - 7 * DAY)


async def _oldest(database: Database):
    async with database.session() as session:
        return await oldest_note(session), await oldest_closed_case_text(session)


async def test_checkpoint_empties_the_sqlite_log(database: Database, db):
    """On SQLite, the write-ahead log is empty after a checkpoint; elsewhere it does nothing."""
    await add_member(database, "U1")
    await checkpoint(database)
    if db.backend == "sqlite":
        wal = Path(db.url.removeprefix("sqlite:///") + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0  # noqa: ASYNC240
