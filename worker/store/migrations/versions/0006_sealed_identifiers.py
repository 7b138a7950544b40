"""identifiers sealed (AES-GCM) instead of clear; the suppression list kept after completion

Revision ID: 0006
Revises: 0005

Identifiers already in the clear are sealed by the first process that opens the store with its
keys (worker.runtime), since a migration holds no key; until then they stay where they were.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("sealed_identifiers", sa.Text(), nullable=True))
        batch.alter_column("identifiers", existing_type=sa.JSON(), nullable=True)
    op.create_table(
        "suppressions",
        sa.Column("request_id", sa.String(length=36), sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=False),
        sa.Column("systems", sa.JSON(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_suppressions_completed_at", "suppressions", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_suppressions_completed_at", table_name="suppressions")
    op.drop_table("suppressions")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("sealed_identifiers")
