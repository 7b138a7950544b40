"""counters: a few running totals and the time each last moved, for the metrics (the reconciler's
passes, whose time says it runs, and the leases it found expired), seeded at 0; an index on
audit_events(type, system), so counting one type of event by system at each scrape stays cheap

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SEEDED = ("reconcile.passes", "reconcile.leases_expired")


def upgrade() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
    )
    op.bulk_insert(counters, [{"name": name, "value": 0, "updated_at": None} for name in SEEDED])
    op.create_index("ix_audit_events_type_system", "audit_events", ["type", "system"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_type_system", table_name="audit_events")
    op.drop_table("counters")
