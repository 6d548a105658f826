"""Check-ins: each member's weekly schedule and one row per check-in week

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkin_subscription",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("time", sa.String(length=5), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("next_prompt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("member_id"),
    )
    with op.batch_alter_table("checkin_subscription", schema=None) as batch_op:
        batch_op.create_index(
            "ix_checkin_subscription_due", ["status", "next_prompt_at"], unique=False
        )

    op.create_table(
        "checkin_week",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("prompted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("note_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminder_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminder_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offered_support_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id", "opens_at", name="uq_checkin_week_member_opens"),
    )
    with op.batch_alter_table("checkin_week", schema=None) as batch_op:
        batch_op.create_index("ix_checkin_week_opens", ["opens_at"], unique=False)
        batch_op.create_index("ix_checkin_week_reminder", ["reminder_due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("checkin_week", schema=None) as batch_op:
        batch_op.drop_index("ix_checkin_week_reminder")
        batch_op.drop_index("ix_checkin_week_opens")

    op.drop_table("checkin_week")
    with op.batch_alter_table("checkin_subscription", schema=None) as batch_op:
        batch_op.drop_index("ix_checkin_subscription_due")

    op.drop_table("checkin_subscription")
