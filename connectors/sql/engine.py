"""The engine a sql system is reached through: a default driver per backend, hidden parameters,
and on SQLite serialized transactions, enforced foreign keys and the fold's functions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from connectors.normalize import fold_text

DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def create_engine(url: str) -> sa.Engine:
    """An engine that pings pooled connections, hides parameters and, on SQLite, enforces FKs."""
    parsed = sa.make_url(url)
    parsed = parsed.set(drivername=DEFAULT_DRIVERS.get(parsed.drivername, parsed.drivername))
    connect_args = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
    engine = sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        serialize_sqlite(engine, busy_timeout_ms=5000)
        sa.event.listen(engine, "connect", lambda dbapi_connection, _record: _sqlite_functions(dbapi_connection))
    return engine


def serialize_sqlite(engine: sa.Engine, busy_timeout_ms: int, *pragmas: str) -> None:
    """Make every SQLite transaction BEGIN IMMEDIATE, so its reads and writes share one
    snapshot under the write lock, with foreign keys enforced and a busy timeout."""

    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not begin lazily on its own
        cursor = dbapi_connection.cursor()
        for pragma in ("foreign_keys=ON", f"busy_timeout={busy_timeout_ms}", *pragmas):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    sa.event.listen(engine, "connect", connect)
    sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))


def _sqlite_functions(dbapi_connection: Any) -> None:
    """The folds as SQLite functions, with Python's Unicode rules (the request's side is folded by them)."""
    for name, fold in (("erasure_nfc", ()), ("erasure_trim", ("trim",)), ("erasure_lower", ("lower",)),
                       ("erasure_upper", ("upper",))):
        dbapi_connection.create_function(
            name, 1, lambda value, fold=fold: fold_text(value, fold) if isinstance(value, str) else value,
            deterministic=True)
