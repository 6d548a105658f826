"""Check-in tables: each member's weekly schedule, and one row per check-in week.

The next prompt and each week's reminder are timestamps in these rows, so a restart, a missed tick
or a second instance neither loses nor doubles one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


class SubscriptionStatus:
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"


class CheckinSubscription(SQLModel, table=True):
    """A member's consent and weekly schedule. One row per member who ever opted in."""

    __tablename__ = "checkin_subscription"
    __table_args__ = (Index("ix_checkin_subscription_due", "status", "next_prompt_at"),)

    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), primary_key=True)
    )
    status: str = Field(default=SubscriptionStatus.ACTIVE, max_length=10)
    weekday: int  # 0 = Monday
    time: str = Field(max_length=5)  # "HH:MM", in `timezone`
    timezone: str = Field(max_length=64)
    # When the next scheduled prompt is due (UTC). Claimed by moving it on, compare-and-swap.
    next_prompt_at: datetime = Field(sa_type=UTCDateTime)
    paused_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consented_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class CheckinWeek(SQLModel, table=True):
    """One member's check-in week: from the prompt that opens it to the next one."""

    __tablename__ = "checkin_week"
    __table_args__ = (
        UniqueConstraint("member_id", "opens_at", name="uq_checkin_week_member_opens"),
        Index("ix_checkin_week_reminder", "reminder_due_at"),
        # Covers the coordinators' report: weeks by when they opened, with their answers.
        Index("ix_checkin_week_opens_score", "opens_at", "score"),
    )

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=False)
    )
    opens_at: datetime = Field(sa_type=UTCDateTime)  # the scheduled prompt time
    # The next prompt time: the week can be answered until then. Unknown until it opens.
    closes_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    prompted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    score: int | None = Field(default=None)  # 1 Struggling … 5 Thriving
    skipped: bool = Field(default=False)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    note: str | None = Field(default=None, sa_type=Text)  # encrypted
    note_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reminder_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reminder_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    offered_support_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
