"""guard_looks: what the reconciler's watch last saw of each snapshot folder, so a folder that
appeared or changed since (a restored backup, a late export) is checked against the guard;
model_flags.notified_at, notify_attempts, notify_after: the signed notice to a training platform
(`[models] notify_url`), sent until it is taken

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guard_looks",
        sa.Column("snapshot", sa.String(320), primary_key=True),
        sa.Column("system", sa.String(100), nullable=False, index=True),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("files_digest", sa.String(64), nullable=False),
        sa.Column("looked_at", sa.DateTime(), nullable=False),
        sa.Column("rows_caught", sa.Integer(), nullable=False, server_default="0"),
    )
    with op.batch_alter_table("model_flags") as batch:
        batch.add_column(sa.Column("notified_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("notify_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("notify_after", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_flags") as batch:
        batch.drop_column("notify_after")
        batch.drop_column("notify_attempts")
        batch.drop_column("notified_at")
    op.drop_table("guard_looks")
