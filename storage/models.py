"""The tables of the foundation: members, their platform identities, and the outbox.

Each feature adds its own tables (in its own module under ``storage/``) and its own migration.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


class Member(SQLModel, table=True):
    """A person in the network, whatever platform they reach us from."""

    __tablename__ = "member"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=200)
    # Roles as the platform last reported them ("coach,coordinator"); kept so background work
    # (routing, escalation) knows them between requests. The request's own roles always win.
    roles: str = Field(default="", max_length=100)
    timezone: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)

    def role_names(self) -> set[str]:
        return {r for r in self.roles.split(",") if r}


class Identity(SQLModel, table=True):
    """One platform account of a member: (platform, user id) is unique."""

    __tablename__ = "identity"
    __table_args__ = (
        UniqueConstraint("platform", "user_id", name="uq_identity_platform_user"),
        Index("ix_identity_member_id", "member_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=False)
    )
    platform: str = Field(max_length=20)
    user_id: str = Field(max_length=100)
    display_name: str = Field(default="", max_length=200)
    # The DM channel the platform gave us, so a fan-out costs one request per member.
    dm_channel_id: str | None = Field(default=None, max_length=100)
    # When a DM last failed for good (e.g. Discord 50007, DMs closed); cleared by a later success.
    dm_failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboxStatus:
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class OutboxMessage(SQLModel, table=True):
    """A message that must reach someone, written in the same transaction as its cause.

    The delivery worker claims due rows, sends them through their platform, and records the
    platform's message id, so a restart resends only what was never confirmed.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "platform", "priority", "next_attempt_at"),
        Index("ix_outbox_message_key", "message_key"),
        # A reply in a thread (Slack) is traced back to the message it answers.
        Index("ix_outbox_platform_message", "platform", "platform_message_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    # Lower goes first: crisis offers and escalations jump the queue ahead of prompts.
    priority: int = Field(default=5)
    platform: str = Field(max_length=20)
    # "dm": recipient is a platform user id; "channel": recipient is a channel name
    # ("announcements", "coordinators") that the platform maps to its configured channel.
    kind: str = Field(max_length=10)
    recipient: str = Field(max_length=100)
    member_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=True),
    )
    # The neutral message as encrypted JSON; emptied once sent (nothing private lingers).
    payload: str = Field(default="", sa_type=Text)
    # A stable name for the sent message so it can be edited later (e.g. "event:12:announce").
    message_key: str | None = Field(default=None, max_length=100)
    # When set, this row edits the message(s) sent under that key instead of sending a new one.
    edit_of: str | None = Field(default=None, max_length=100)
    status: str = Field(default=OutboxStatus.PENDING, max_length=12)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    channel_id: str | None = Field(default=None, max_length=100)
    platform_message_id: str | None = Field(default=None, max_length=100)
    # An error class or platform code, never message text.
    last_error: str | None = Field(default=None, max_length=200)
