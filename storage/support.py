"""Support tables: cases, the offers made to coaches, each coach's duty settings, the audit trail,
and (only when ``support.keep_transcripts``) the relayed messages.

Every deadline is a timestamp in a row — an offer's ``due_at``, an escalated case's
``realert_due_at``, a follow-up's ``followup_due_at`` — claimed by compare-and-swap in the same
transaction that queues its messages, so a restart or a second instance loses and doubles nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime

NUMBER_BASE = 1000  # case numbers start at H-1001


class CaseStatus:
    DRAFT = "draft"  # signposting shown; the member has not asked to be connected yet
    WAITING = "waiting"  # stored and being routed to a coach
    ESCALATED = "escalated"  # no coach accepted: the coordinators have been alerted
    ACTIVE = "active"  # a coach accepted; messages are relayed
    CLOSED = "closed"

    OPEN = (WAITING, ESCALATED, ACTIVE)
    UNASSIGNED = (WAITING, ESCALATED)


class OfferStatus:
    PENDING = "pending"
    ACCEPTED = "accepted"
    PASSED = "passed"
    TIMED_OUT = "timed_out"
    WITHDRAWN = "withdrawn"  # the case was taken another way, closed, or the coach went off duty


def case_number(case_id: int) -> str:
    """The short number a member and their coach know a case by: ``H-1042``."""
    return f"H-{NUMBER_BASE + case_id}"


def parse_case_number(text: str) -> int | None:
    """The case id behind ``H-1042`` (or ``h1042``, ``1042``); None when it isn't one."""
    digits = text.strip().upper().removeprefix("H").lstrip("-")
    if not digits.isdigit() or int(digits) <= NUMBER_BASE:
        return None
    return int(digits) - NUMBER_BASE


def _member_fk(nullable: bool = True, ondelete: str = "SET NULL") -> Column:
    return Column(Integer, ForeignKey("member.id", ondelete=ondelete), nullable=nullable)


class SupportCase(SQLModel, table=True):
    """One request for support, from the first signposting to its close."""

    __tablename__ = "support_case"
    __table_args__ = (
        Index("ix_support_case_member", "member_id", "status"),
        Index("ix_support_case_coach", "coach_member_id", "status"),
        Index("ix_support_case_realert", "status", "realert_due_at"),
        Index("ix_support_case_followup", "followup_due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Kept without identity (NULL) if the member's data is deleted: the audit trail stays.
    member_id: int | None = Field(default=None, sa_column=_member_fk())
    status: str = Field(default=CaseStatus.DRAFT, max_length=10)
    urgent: bool = Field(default=False)
    share_name: bool = Field(default=False)  # anonymous unless the member chooses otherwise
    words: str | None = Field(default=None, sa_type=Text)  # the member's words, encrypted
    created_at: datetime = Field(sa_type=UTCDateTime)
    connected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    coach_member_id: int | None = Field(default=None, sa_column=_member_fk())
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    coordinators_alerted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    escalated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    realert_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    realerts: int = Field(default=0)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: str | None = Field(default=None, max_length=12)  # "member" | "coach" | "system"
    feedback: int | None = Field(default=None)  # 1–5, optional
    followup_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    followup_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    followup_declined: bool = Field(default=False)

    @property
    def number(self) -> str:
        assert self.id is not None
        return case_number(self.id)


class SupportOffer(SQLModel, table=True):
    """A case offered to one coach, with the time by which they must accept."""

    __tablename__ = "support_offer"
    __table_args__ = (
        Index("ix_support_offer_due", "status", "due_at"),
        Index("ix_support_offer_case", "case_id"),
        Index("ix_support_offer_coach", "coach_member_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(
        sa_column=Column(Integer, ForeignKey("support_case.id", ondelete="CASCADE"), nullable=False)
    )
    coach_member_id: int = Field(sa_column=_member_fk(nullable=False, ondelete="CASCADE"))
    offered_at: datetime = Field(sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default=OfferStatus.PENDING, max_length=10)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CoachProfile(SQLModel, table=True):
    """A coach's duty: on or off, an optional case limit and working hours."""

    __tablename__ = "coach_profile"

    member_id: int = Field(sa_column=Column(
        Integer, ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    ))  # fmt: skip
    on_duty: bool = Field(default=False)
    case_limit: int | None = Field(default=None)  # None: no limit
    hours_start: str | None = Field(default=None, max_length=5)  # "HH:MM" in `timezone`
    hours_end: str | None = Field(default=None, max_length=5)
    timezone: str = Field(max_length=64)
    last_offered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The case a plain DM from this coach goes to: the one they last acted on.
    current_case_id: int | None = Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey("support_case.id", ondelete="SET NULL"), nullable=True
        ),
    )
    updated_at: datetime = Field(sa_type=UTCDateTime)


class CaseEvent(SQLModel, table=True):
    """One step in a case's audit trail: who, when, what — never what anyone wrote."""

    __tablename__ = "support_case_event"
    __table_args__ = (Index("ix_support_case_event_case", "case_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(
        sa_column=Column(Integer, ForeignKey("support_case.id", ondelete="CASCADE"), nullable=False)
    )
    at: datetime = Field(sa_type=UTCDateTime)
    kind: str = Field(max_length=20)  # created, offered, passed, timed_out, accepted, …
    actor_role: str = Field(max_length=12)  # member, coach, coordinator, system
    actor_member_id: int | None = Field(default=None, sa_column=_member_fk())
    detail: str = Field(default="", max_length=100)  # ids and counts only


class CaseMessage(SQLModel, table=True):
    """A relayed message, kept (encrypted) only when ``support.keep_transcripts`` is on."""

    __tablename__ = "support_case_message"
    __table_args__ = (Index("ix_support_case_message_case", "case_id"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(
        sa_column=Column(Integer, ForeignKey("support_case.id", ondelete="CASCADE"), nullable=False)
    )
    at: datetime = Field(sa_type=UTCDateTime)
    sender: str = Field(max_length=10)  # "member" | "coach"
    text: str = Field(sa_type=Text)  # encrypted
