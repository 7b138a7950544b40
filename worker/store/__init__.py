"""The store: request state, lineage and flags, under Alembic migrations."""
