"""initial schema

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lineage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("snapshot", sa.String(length=300), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model", "version", "snapshot"),
    )
    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lineage_snapshot"), ["snapshot"], unique=False)

    op.create_table(
        "requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_requests_deadline"), ["deadline"], unique=False)
        batch_op.create_index(batch_op.f("ix_requests_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_requests_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_requests_subject_ref"), ["subject_ref"], unique=False)

    op.create_table(
        "model_flags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("snapshots", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("flagged_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model", "version", "request_id"),
    )
    with op.batch_alter_table("model_flags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_flags_request_id"), ["request_id"], unique=False)

    op.create_table(
        "snapshot_hits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("snapshot", sa.String(length=300), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("found_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "snapshot"),
    )
    with op.batch_alter_table("snapshot_hits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_snapshot_hits_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_snapshot_hits_snapshot"), ["snapshot"], unique=False)

    op.create_table(
        "system_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("items_erased", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "system"),
    )
    with op.batch_alter_table("system_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_system_tasks_request_id"), ["request_id"], unique=False)
        batch_op.create_index("ix_system_tasks_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("system_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_system_tasks_status")
        batch_op.drop_index(batch_op.f("ix_system_tasks_request_id"))

    op.drop_table("system_tasks")
    with op.batch_alter_table("snapshot_hits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snapshot_hits_snapshot"))
        batch_op.drop_index(batch_op.f("ix_snapshot_hits_request_id"))

    op.drop_table("snapshot_hits")
    with op.batch_alter_table("model_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_flags_request_id"))

    op.drop_table("model_flags")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_subject_ref"))
        batch_op.drop_index(batch_op.f("ix_requests_status"))
        batch_op.drop_index(batch_op.f("ix_requests_received_at"))
        batch_op.drop_index(batch_op.f("ix_requests_deadline"))

    op.drop_table("requests")
    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_snapshot"))

    op.drop_table("lineage")
