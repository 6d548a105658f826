"""Support: cases, offers to coaches, coach duty, the audit trail and kept transcripts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "support_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("share_name", sa.Boolean(), nullable=False),
        sa.Column("words", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("coach_member_id", sa.Integer(), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("coordinators_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("realert_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("realerts", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=12), nullable=True),
        sa.Column("feedback", sa.Integer(), nullable=True),
        sa.Column("followup_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("followup_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("followup_declined", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["coach_member_id"], ["member.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("support_case", schema=None) as batch_op:
        batch_op.create_index("ix_support_case_coach", ["coach_member_id", "status"], unique=False)
        batch_op.create_index("ix_support_case_followup", ["followup_due_at"], unique=False)
        batch_op.create_index("ix_support_case_member", ["member_id", "status"], unique=False)
        batch_op.create_index("ix_support_case_realert", ["status", "realert_due_at"], unique=False)

    op.create_table(
        "coach_profile",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("on_duty", sa.Boolean(), nullable=False),
        sa.Column("case_limit", sa.Integer(), nullable=True),
        sa.Column("hours_start", sa.String(length=5), nullable=True),
        sa.Column("hours_end", sa.String(length=5), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("last_offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_case_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["current_case_id"], ["support_case.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.create_table(
        "support_case_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("actor_role", sa.String(length=12), nullable=False),
        sa.Column("actor_member_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["actor_member_id"], ["member.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["case_id"], ["support_case.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("support_case_event", schema=None) as batch_op:
        batch_op.create_index("ix_support_case_event_case", ["case_id", "at"], unique=False)

    op.create_table(
        "support_case_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sender", sa.String(length=10), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["support_case.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("support_case_message", schema=None) as batch_op:
        batch_op.create_index("ix_support_case_message_case", ["case_id"], unique=False)

    op.create_table(
        "support_offer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("coach_member_id", sa.Integer(), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["support_case.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["coach_member_id"], ["member.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("support_offer", schema=None) as batch_op:
        batch_op.create_index("ix_support_offer_case", ["case_id"], unique=False)
        batch_op.create_index("ix_support_offer_coach", ["coach_member_id", "status"], unique=False)
        batch_op.create_index("ix_support_offer_due", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("support_offer", schema=None) as batch_op:
        batch_op.drop_index("ix_support_offer_due")
        batch_op.drop_index("ix_support_offer_coach")
        batch_op.drop_index("ix_support_offer_case")

    op.drop_table("support_offer")
    with op.batch_alter_table("support_case_message", schema=None) as batch_op:
        batch_op.drop_index("ix_support_case_message_case")

    op.drop_table("support_case_message")
    with op.batch_alter_table("support_case_event", schema=None) as batch_op:
        batch_op.drop_index("ix_support_case_event_case")

    op.drop_table("support_case_event")
    op.drop_table("coach_profile")
    with op.batch_alter_table("support_case", schema=None) as batch_op:
        batch_op.drop_index("ix_support_case_realert")
        batch_op.drop_index("ix_support_case_member")
        batch_op.drop_index("ix_support_case_followup")
        batch_op.drop_index("ix_support_case_coach")

    op.drop_table("support_case")
