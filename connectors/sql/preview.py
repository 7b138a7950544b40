"""The sql kind's look without acting: what erase() would take now, table by table, counted with the
erase's own match (match.py; `table.column` references followed from the referenced rows, as erase
follows them) in a transaction the database holds read-only; and, for an export (Art. 15 access), the
subject's rows themselves, table by table.

A table's count is what erase() reports for it: a delete table's matched rows; an anonymize table's
matched rows not anonymized yet (as verify counts them); a delete_unreferenced table's matched rows that
no row refers to (deleted) plus those referred to and not anonymized yet. The references are judged as
the database is now: a row that only rows this same erasure deletes refer to, already anonymized, is
deleted by erase() but not counted here. A table under a retention is counted apart, as kept."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from connectors.base import Part, Preview, Subject
from connectors.records import record
from connectors.sql.config import SqlConfig, SqlTable
from connectors.sql.match import Condition


class Sql(Protocol):
    """The sql connector as read here (connector.py imports this module, never the reverse)."""

    config: SqlConfig

    @property
    def engine(self) -> sa.Engine:
        """The connector's engine."""

    def _reflect(self, conn: sa.Connection) -> Any: ...

    def _match(self, conn: sa.Connection, schema: Any, subject: Subject) -> list[list[Condition]]: ...

    def _left(self, conn: sa.Connection, table: sa.Table, entry: SqlTable, matches: list[Condition],
              subject: Subject) -> int: ...

    def _errors(self, secrets: Iterable[str], table: str | None = None) -> AbstractContextManager[None]: ...


@contextmanager
def read_only(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that cannot write (PostgreSQL, MySQL, MariaDB: READ ONLY; SQLite:
    query_only, set after its BEGIN IMMEDIATE and reset before the connection goes back to the pool),
    rolled back at the end."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        conn.exec_driver_sql("PRAGMA query_only = ON" if sqlite else "SET TRANSACTION READ ONLY")
        try:
            yield conn
        finally:
            conn.rollback()
            if sqlite:  # on the driver's connection: a statement through SQLAlchemy would begin again
                conn.connection.driver_connection.execute("PRAGMA query_only = OFF")  # type: ignore[union-attr]


def look(sql: Sql, subject: Subject) -> Preview:
    """Rows per table that erase() would delete or anonymize now; the retained tables' rows apart."""
    tables: dict[str, int] = {}
    retained: dict[str, int] = {}
    now = datetime.now(UTC)
    with sql._errors(subject.all_values()), read_only(sql.engine) as conn:
        schema = sql._reflect(conn)
        matches = sql._match(conn, schema, subject)
        for i in schema.apply_order:
            entry = sql.config.tables[i]
            table = schema.tables[entry.name]
            if entry.retain and entry.retain.holds(now):
                retained[entry.name] = retained.get(entry.name, 0) + sql._left(conn, table, entry, matches[i], subject)
                continue
            tables[entry.name] = tables.get(entry.name, 0) + _taken(sql, conn, schema, entry, matches[i], subject)
    counts: dict[str, Any] = {"tables": tables} | ({"retained": retained} if retained else {})
    return Preview(looked=True, items=sum(tables.values()), counts=counts)


def _taken(sql: Sql, conn: sa.Connection, schema: Any, entry: SqlTable, matches: list[Condition],
           subject: Subject) -> int:
    """The rows of one table its action would change: as verify counts them, and for delete_unreferenced
    the unreferenced rows besides, which are deleted whatever they hold."""
    table = schema.tables[entry.name]
    if entry.action != "delete_unreferenced":
        return sql._left(conn, table, entry, matches, subject)
    refs = schema.referrers[table.fullname]
    free = [~ref.refers_to(table) for ref in refs]
    referred: Condition = sa.or_(*(ref.refers_to(table) for ref in refs)) if refs else sa.false()
    count = sa.select(sa.func.count()).select_from(table)
    with sql._errors(subject.all_values(), entry.name):
        deleted = sum(conn.execute(count.where(match, *free)).scalar_one() for match in matches)
    return deleted + sql._left(conn, table, entry, [sa.and_(match, referred) for match in matches], subject)


def read(sql: Sql, subject: Subject) -> Iterator[Part]:
    """The subject's rows of each listed table (`tables/NAME.jsonl`), every column, read in one read-only
    transaction; a table listed twice gives each row once."""
    with sql._errors(subject.all_values()), read_only(sql.engine) as conn:
        schema = sql._reflect(conn)
        matches = sql._match(conn, schema, subject)
        by_table: dict[str, list[Condition]] = {}
        for i, entry in enumerate(sql.config.tables):
            by_table.setdefault(entry.name, []).extend(matches[i])
        for name, conditions in by_table.items():
            yield Part(f"tables/{name}.jsonl", records=_rows(sql, conn, schema.tables[name], conditions, subject))


def _rows(sql: Sql, conn: sa.Connection, table: sa.Table, conditions: list[Condition],
          subject: Subject) -> Iterator[dict[str, Any]]:
    """The rows any of the conditions matches, each once, as JSON objects."""
    if not conditions:
        return
    query = sa.select(table).where(sa.or_(*conditions)).order_by(*table.primary_key.columns)
    with sql._errors(subject.all_values(), table.fullname):
        for row in conn.execute(query).mappings():
            yield record({column.name: row[column] for column in table.columns})
