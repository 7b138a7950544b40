"""The sql connector's test world (tests/connectors/sql): the acceptance world's tables and rows, a
connector over them, and the row dump a test compares before and after."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from connectors.base import Subject
from connectors.sql.connector import SqlConnector
from tests.helpers.kinds import sql_connector

# The acceptance world's config: users deleted, their orders anonymized, those orders' items deleted.
TABLES: list[dict[str, Any]] = [
    {"name": "users", "where": {"id": "user_id"}, "action": "delete"},
    {
        "name": "orders",
        "where": {"user_id": "user_id"},
        "action": "anonymize",
        "set": {"email": "", "shipping_address": "", "user_id": "null"},
    },
    {"name": "order_items", "where": {"order_id": "orders.id"}, "action": "delete"},
]
USERS = [(4, "xa@b.c"), (42, "a@b.c"), (420, "a@b.c.d"), (5, "o'brien@x.io"), (6, "obrien@x.io")]
ORDERS = [(1, 42, "a@b.c"), (2, 42, "a@b.c"), (3, 4, "xa@b.c"), (4, 420, "a@b.c.d")]
ITEMS = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 4)]  # user 42: 2 orders, with 1 and 2 items


def connector(url: str, tables: list[dict[str, Any]] = TABLES) -> SqlConnector:
    """A connector for the `app-db` system with these tables."""
    return sql_connector({"name": "app-db", "kind": "sql", "url": url, "tables": tables})


def subject(**identifiers: str | tuple[str, ...]) -> Subject:
    """A subject from keyword identifiers; a tuple gives several values of one type."""
    return Subject({k: v if isinstance(v, tuple) else (v,) for k, v in identifiers.items()})


def key() -> sa.Column[int]:
    """An integer primary key whose values the test chooses."""
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)


def dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, ordered by id."""
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))]  # noqa: S608
            for t in ("users", "orders", "order_items")
        }
