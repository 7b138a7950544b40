"""Opening the store: an engine tuned for its database, and the schema brought to head."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError

from connectors.sql.engine import serialize_sqlite
from worker.errors import ConfigError, ErasureError

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x45524153  # "ERAS": serializes migrations of one PostgreSQL store
PING_AFTER_IDLE = 1.0  # seconds a pooled connection sits unused before it is checked at checkout
IDLE_SINCE = "erasure.idle_since"  # in a pooled connection's info: when it was last checked in


class StoreUnavailable(ErasureError):
    """The store could not be reached or brought up to date."""


def create_store_engine(url: str) -> Engine:
    """An engine for the store: SQLite in WAL mode with a busy timeout and writes
    serialized by BEGIN IMMEDIATE; PostgreSQL through psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"store_url: not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30})
        serialize_sqlite(engine, 30_000, "journal_mode=WAL")
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, hide_parameters=True)
    ping_when_idle(engine)
    return engine


def ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle for PING_AFTER_IDLE seconds or more
    (one a restarted server dropped is replaced, unseen), not before every use as `pool_pre_ping`
    does: under load that round trip was a third of the store's transactions. A connection that
    broke while in steady use fails its statement once; SQLAlchemy then drops the whole pool, and
    the caller's retry (a task's, or a write outlasting the outage) gets a fresh connection."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(IDLE_SINCE, None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:  # the pool makes a fresh connection and tries again
            raise DisconnectionError(f"a pooled connection is gone ({type(exc).__name__})") from exc


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    """A pragma outside any transaction (inside one, SQLite ignores foreign_keys)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; cheap when it already is."""
    config = _alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        with engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
        with engine.connect() as conn:
            sqlite = engine.dialect.name == "sqlite"
            if sqlite:  # a table rebuilt by a batch migration must not cascade into its children
                _sqlite_pragma(conn, "foreign_keys=OFF")
            try:
                with conn.begin():
                    if engine.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                    if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                        raise StoreUnavailable("the migration left rows whose foreign keys point nowhere")
            finally:
                if sqlite:
                    _sqlite_pragma(conn, "foreign_keys=ON")
    except SQLAlchemyError as exc:
        where = make_url(str(engine.url)).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StoreUnavailable(f"store {where}: {reason}") from None
