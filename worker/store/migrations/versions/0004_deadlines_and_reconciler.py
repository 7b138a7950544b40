"""deadline extensions, overdue warnings, and the reconciler's re-sends

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extended_months", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("extended_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("extended_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("original_deadline", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("overdue_warned_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("requeues", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("system_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("requeues", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("system_tasks", schema=None) as batch_op:
        batch_op.drop_column("requeues")
        batch_op.drop_column("queued_at")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        for column in ("requeues", "queued_at", "overdue_warned_at", "original_deadline", "extended_at",
                       "extended_reason", "extended_months"):
            batch_op.drop_column(column)
