"""The sql kind's look without acting: its transaction cannot write on any engine (and the connection
writes again once back in the pool), and an export gives each matched row once, every column as JSON."""

from __future__ import annotations

import base64
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import Subject
from connectors.sql.engine import create_engine
from connectors.sql.preview import read_only
from tests.helpers import sql_connector, user


def test_the_look_cannot_write_and_the_pool_writes_again(sql_url: str) -> None:
    """On SQLite, PostgreSQL and MariaDB a write inside the look's transaction is refused; the same pooled
    connection writes afterwards."""
    engine = create_engine(sql_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    with read_only(engine) as conn:
        with pytest.raises(sa.exc.DBAPIError):
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        assert conn.exec_driver_sql("SELECT id FROM t").scalars().all() == [2]
    engine.dispose()


def exported(tmp_path: Path, tables: list[dict[str, Any]], subject: Subject) -> dict[str, list[dict[str, Any]]]:
    """The parts of a subject's export from a SQLite table of many column types (user 42's row, user 420's), by name."""
    url = f"sqlite:///{tmp_path}/app.db"
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    events = sa.Table("events", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("user_id", sa.Integer),
                      sa.Column("email", sa.String(100)), sa.Column("day", sa.Date),
                      sa.Column("amount", sa.Numeric(10, 2)), sa.Column("blob", sa.LargeBinary))
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(events.insert(), [
            {"id": 1, "user_id": 42, "email": "a@x", "day": date(2026, 1, 2), "amount": Decimal("9.5"),
             "blob": b"\x00"},
            {"id": 2, "user_id": 420, "email": "b@x", "day": None, "amount": None, "blob": None}])
    engine.dispose()
    with sql_connector({"name": "app-db", "kind": "sql", "url": url, "tables": tables}) as connector:
        return {part.name: list(part.records or ()) for part in connector.export(subject)}


def test_an_export_gives_every_column_as_json(tmp_path: Path) -> None:
    """Dates as ISO 8601, decimals as text, bytes as base64; the neighbour 420 is not there."""
    parts = exported(tmp_path, [{"name": "events", "where": {"user_id": "user_id"}, "action": "delete"}], user("42"))
    assert parts == {"tables/events.jsonl": [{"id": 1, "user_id": 42, "email": "a@x", "day": "2026-01-02",
                                              "amount": "9.50", "blob": {"base64": base64.b64encode(b"\0").decode()}}]}


def test_a_table_listed_twice_gives_each_row_once(tmp_path: Path) -> None:
    """Two entries of one table (by user id, and by email), both matching one row, make one part with it once."""
    parts = exported(tmp_path, [{"name": "events", "where": {"user_id": "user_id"}, "action": "delete"},
                                {"name": "events", "where": {"email": "email"}, "action": "delete"}],
                     Subject({"user_id": ("42",), "email": ("a@x",)}))
    assert [row["id"] for row in parts["tables/events.jsonl"]] == [1]
