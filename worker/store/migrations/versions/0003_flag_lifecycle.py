"""flag lifecycle and training times

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trained_at", sa.DateTime(), nullable=True))
    # lineage recorded before training times were kept: trained no later than it was recorded
    op.execute("UPDATE lineage SET trained_at = recorded_at")
    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.alter_column("trained_at", existing_type=sa.DateTime(), nullable=False)

    with op.batch_alter_table("model_flags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("changed_at", sa.DateTime(), nullable=True))

    op.create_table(
        "flag_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flag_id", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flag_id"],
            ["model_flags.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("flag_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flag_events_flag_id"), ["flag_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("flag_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flag_events_flag_id"))

    op.drop_table("flag_events")
    with op.batch_alter_table("model_flags", schema=None) as batch_op:
        batch_op.drop_column("changed_at")
        batch_op.drop_column("reason")

    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.drop_column("trained_at")
