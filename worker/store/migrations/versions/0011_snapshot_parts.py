"""snapshot_passes and snapshot_parts: a snapshot pass over many files split into parts that any
worker may take, each part's files, lease, journal and results, and the pass settled by the store
when its last part is recorded

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshot_passes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("system", sa.String(100), nullable=False),
        sa.Column("requests", sa.JSON(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("parts_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("settled_at", sa.DateTime(), nullable=True, index=True),
    )
    op.create_table(
        "snapshot_parts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("pass_id", sa.String(36), sa.ForeignKey("snapshot_passes.id"), nullable=False, index=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("queued_at", sa.DateTime(), nullable=True),
        sa.Column("journal", sa.JSON(), nullable=True),
        sa.Column("removed", sa.JSON(), nullable=True),
        sa.Column("purged", sa.JSON(), nullable=True),
        sa.Column("skipped", sa.JSON(), nullable=True),
        sa.Column("left_rows", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("transient", sa.Boolean(), nullable=True),
    )
    op.create_index("ix_snapshot_parts_status", "snapshot_parts", ["status"])


def downgrade() -> None:
    op.drop_index("ix_snapshot_parts_status", table_name="snapshot_parts")
    op.drop_table("snapshot_parts")
    op.drop_table("snapshot_passes")
