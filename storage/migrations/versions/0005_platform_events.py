"""Platform events already handled (Slack's retried events are handled once), and an index to
trace a thread reply back to the message it answers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "event_id", name="uq_platform_event"),
    )
    with op.batch_alter_table("platform_event", schema=None) as batch_op:
        batch_op.create_index("ix_platform_event_seen_at", ["seen_at"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_platform_message", ["platform", "platform_message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_platform_message")

    with op.batch_alter_table("platform_event", schema=None) as batch_op:
        batch_op.drop_index("ix_platform_event_seen_at")

    op.drop_table("platform_event")
