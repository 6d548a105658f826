"""The check-in report counts answers from an index alone: (opens_at, score)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkin_week", schema=None) as batch_op:
        batch_op.create_index("ix_checkin_week_opens_score", ["opens_at", "score"], unique=False)
        batch_op.drop_index("ix_checkin_week_opens")


def downgrade() -> None:
    with op.batch_alter_table("checkin_week", schema=None) as batch_op:
        batch_op.create_index("ix_checkin_week_opens", ["opens_at"], unique=False)
        batch_op.drop_index("ix_checkin_week_opens_score")
