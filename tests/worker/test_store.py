"""The store on each engine it supports: the schema comes from migrations, times come back in
UTC, and the database itself keeps idempotency keys unique."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import Session

from worker.store import engine as store_engine
from worker.store.engine import MIGRATIONS, create_store_engine, migrate
from worker.store.models import Base, Request

ALEMBIC = AlembicConfig()
ALEMBIC.set_main_option("script_location", str(MIGRATIONS))
HEAD = ScriptDirectory.from_config(ALEMBIC).get_current_head()


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    """An engine on a fresh store, migrated to head."""
    engine = create_store_engine(store_url)
    migrate(engine)
    yield engine
    engine.dispose()


def revision(engine: Engine) -> str | None:
    """The migration revision the database says it is at."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema(engine: Engine) -> dict[str, set[str]]:
    """Every table of the database with its column names."""
    found = inspect(engine)
    return {table: {c["name"] for c in found.get_columns(table)} for table in found.get_table_names()}


def request_row(request_id: str, key: str | None, **fields: Any) -> dict[str, Any]:
    """The columns of one requests row, for a raw insert."""
    now = datetime.now(UTC)
    return {"id": request_id, "subject_ref": "ref", "status": "received",
            "idempotency_key": key, "received_at": now, "deadline": now + timedelta(days=30), **fields}


def test_migrations_create_every_table_with_every_column(store: Engine) -> None:
    """After migrating, each model table exists with exactly the model's columns, at the head revision."""
    expected = {name: {c.name for c in table.columns} for name, table in Base.metadata.tables.items()}
    found = schema(store)
    assert {name: found.get(name) for name in expected} == expected
    assert "alembic_version" in found
    assert revision(store) == HEAD


def test_migrating_twice_changes_nothing(store: Engine) -> None:
    """A second migrate on a store at head succeeds and keeps schema, revision and rows."""
    with store.begin() as conn:
        conn.execute(insert(Request), [request_row("r-1", "k-1")])
    before = schema(store)

    migrate(store)
    assert schema(store) == before
    assert revision(store) == HEAD
    with store.connect() as conn:
        assert conn.scalars(select(Request.id)).all() == ["r-1"]


def test_another_engine_sees_the_schema_at_head(store_url: str, store: Engine) -> None:
    """A second engine, as another process would open, finds the store already at the head revision."""
    other = create_store_engine(store_url)
    try:
        assert revision(other) == HEAD
        assert set(Base.metadata.tables) <= set(inspect(other).get_table_names())
    finally:
        other.dispose()


def test_datetimes_come_back_timezone_aware_in_utc(store: Engine) -> None:
    """A time written with any offset is read back as the same instant, tz-aware, in UTC."""
    paris = timezone(timedelta(hours=2))
    written = datetime(2026, 11, 28, 12, 30, 5, tzinfo=paris)
    with Session(store) as session, session.begin():
        session.add(Request(**request_row("r-1", None, received_at=written)))
    with Session(store) as session:
        read = session.scalar(select(Request.received_at))
    assert read == written
    assert read is not None and read.tzinfo == UTC
    assert (read.hour, read.minute, read.second) == (10, 30, 5)


def test_a_naive_datetime_is_refused(store: Engine) -> None:
    """Writing a datetime without a timezone fails rather than guessing one."""
    with pytest.raises(StatementError, match="naive datetime"), Session(store) as session, session.begin():
        session.add(Request(**request_row("r-1", None, received_at=datetime(2026, 11, 28, 12, 0))))


def test_the_database_refuses_a_duplicate_idempotency_key(store: Engine) -> None:
    """Two raw inserts with one idempotency key: the database itself raises IntegrityError."""
    with store.begin() as conn:
        conn.execute(insert(Request), [request_row("r-1", "same-key")])
    with pytest.raises(IntegrityError), store.begin() as conn:
        conn.execute(insert(Request), [request_row("r-2", "same-key")])
    with store.connect() as conn:
        assert conn.scalars(select(Request.id)).all() == ["r-1"]


def test_requests_without_an_idempotency_key_do_not_collide(store: Engine) -> None:
    """Any number of requests may carry no idempotency key."""
    with store.begin() as conn:
        conn.execute(insert(Request), [request_row("r-1", None), request_row("r-2", None)])
    with store.connect() as conn:
        assert sorted(conn.scalars(select(Request.id))) == ["r-1", "r-2"]


def _terminate_pooled(engine: Engine) -> int:
    """Kill, from another connection, the server process behind the engine's pooled connection; its pid."""
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    admin = create_store_engine(engine.url.render_as_string(hide_password=False))
    try:
        with admin.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar_one()
    finally:
        admin.dispose()
    return int(pid)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_pooled_connection_dropped_while_idle_is_replaced_unseen(store_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection the server dropped (a restart, an idle timeout) while it sat in the pool longer than
    PING_AFTER_IDLE is found dead at checkout and replaced: the next statement just works."""
    engine = create_store_engine(store_url)
    try:
        gone = _terminate_pooled(engine)
        monkeypatch.setattr(store_engine, "PING_AFTER_IDLE", 0.0)  # as if it had sat idle that long
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != gone
    finally:
        engine.dispose()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_connection_dropped_while_in_steady_use_fails_once_then_the_pool_is_fresh(store_url: str) -> None:
    """One used moments ago is not checked (that round trip cost a third of the store's transactions
    under load): its statement fails once with a disconnect, and the next one gets a new connection."""
    engine = create_store_engine(store_url)
    try:
        gone = _terminate_pooled(engine)
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != gone
    finally:
        engine.dispose()
