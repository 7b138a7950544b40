"""requests.scope (an objection to training use, or all); guard_entries: the keyed hashes of every
completed request's identifier values, which keep a person out of the next training set

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("scope", sa.String(16), nullable=False, server_default="all"))
    op.create_table(
        "guard_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id_type", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(36), sa.ForeignKey("requests.id"), nullable=False, index=True),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("id_type", "digest", name="uq_guard_entries_type_digest"),
    )


def downgrade() -> None:
    op.drop_table("guard_entries")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("scope")
