"""Event tables: video-call events, weekly series, RSVPs, reminders, and edits awaiting a choice.

Each occurrence of a weekly series is an event of its own (its own id, RSVPs and announcement).
Every reminder is a row with a due time, claimed once by compare-and-swap on ``sent_at`` in the
same transaction that queues its messages; a series knows the start of its next occurrence, so
the rolling horizon moves on from the database alone after a restart.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


class EventStatus:
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class SeriesStatus:
    ACTIVE = "active"  # occurrences are still being added as the horizon moves on
    ENDED = "ended"  # every occurrence exists (or the rest were cancelled)


class Answer:
    GOING = "going"
    MAYBE = "maybe"
    NO = "no"

    ALL = (GOING, MAYBE, NO)
    REMINDED = (GOING, MAYBE)  # who gets reminders and the video link


def event_code(event_id: int) -> str:
    """The short id people know an event by: ``E12``."""
    return f"E{event_id}"


def parse_event_code(text: str) -> int:
    """The event id behind ``E12`` (or ``e12``); a kind ValueError when it isn't one."""
    digits = text.strip().upper().removeprefix("E")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9 or int(digits) < 1:
        raise ValueError(f"{text.strip()!r} isn't an event id — they look like E12")
    return int(digits)


def _member_fk(ondelete: str = "SET NULL", nullable: bool = True) -> Column:
    return Column(Integer, ForeignKey("member.id", ondelete=ondelete), nullable=nullable)


class EventSeries(SQLModel, table=True):
    """A weekly series: the pattern later occurrences are made from, and when the next is due."""

    __tablename__ = "event_series"
    __table_args__ = (Index("ix_event_series_next", "status", "next_start_at"),)

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    description: str = Field(default="", sa_type=Text)
    link: str = Field(max_length=500)
    link_public: bool = Field(default=False)
    timezone: str = Field(max_length=64)
    local_time: str = Field(max_length=5)  # "HH:MM" on the wall clock of `timezone`
    duration_minutes: int
    until: date  # the last local date an occurrence may fall on
    status: str = Field(default=SeriesStatus.ACTIVE, max_length=10)
    # The start of the next occurrence not made yet (UTC); it is made once it comes within the
    # horizon, claimed by moving this on (compare-and-swap). None once the series is complete.
    next_start_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_by: int | None = Field(default=None, sa_column=_member_fk())
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Event(SQLModel, table=True):
    """One video call (a single event, or one occurrence of a series)."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_starts_at", "status", "starts_at"),
        Index("ix_event_series_id", "series_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    series_id: int | None = Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey("event_series.id", ondelete="SET NULL"), nullable=True
        ),
    )
    title: str = Field(max_length=200)
    description: str = Field(default="", sa_type=Text)
    link: str = Field(max_length=500)
    link_public: bool = Field(default=False)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default=EventStatus.SCHEDULED, max_length=10)
    # The calendar SEQUENCE: bumped on every change a calendar should pick up.
    sequence: int = Field(default=0)
    created_by: int | None = Field(default=None, sa_column=_member_fk())
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EventRsvp(SQLModel, table=True):
    """A member's answer for one event; one row per member per event, changeable."""

    __tablename__ = "event_rsvp"
    __table_args__ = (Index("ix_event_rsvp_member", "member_id"),)

    event_id: int = Field(
        sa_column=Column(Integer, ForeignKey("event.id", ondelete="CASCADE"), primary_key=True)
    )
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), primary_key=True)
    )
    answer: str = Field(max_length=10)
    answered_at: datetime = Field(sa_type=UTCDateTime)


class EventReminder(SQLModel, table=True):
    """One reminder before one event: due at a time, sent (claimed) at most once."""

    __tablename__ = "event_reminder"
    __table_args__ = (
        UniqueConstraint("event_id", "offset_seconds", name="uq_event_reminder_offset"),
        Index("ix_event_reminder_due", "sent_at", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(
        sa_column=Column(Integer, ForeignKey("event.id", ondelete="CASCADE"), nullable=False)
    )
    offset_seconds: int  # how long before the start
    due_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EventDraft(SQLModel, table=True):
    """A submitted edit of a series occurrence, kept until its coordinator says whether it is for
    this occurrence only or for the rest of the series too."""

    __tablename__ = "event_draft"

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(
        sa_column=Column(Integer, ForeignKey("event.id", ondelete="CASCADE"), nullable=False)
    )
    member_id: int = Field(sa_column=_member_fk(ondelete="CASCADE", nullable=False))
    form_values: str = Field(sa_type=Text)  # the checked form values, as JSON
    created_at: datetime = Field(sa_type=UTCDateTime)
