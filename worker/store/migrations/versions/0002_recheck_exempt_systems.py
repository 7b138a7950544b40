"""recheck exempt systems

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("system_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recheck_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_system_tasks_recheck_at"), ["recheck_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("system_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_system_tasks_recheck_at"))
        batch_op.drop_column("recheck_at")
