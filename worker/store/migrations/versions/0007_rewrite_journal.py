"""system_tasks.progress: the rows a snapshot rewrite removes, per file, written before each swap

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("system_tasks", sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("system_tasks") as batch:
        batch.drop_column("progress")
