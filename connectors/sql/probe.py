"""The sql kind's read-only probe (`erasure check`): the database is opened read-only (a read-only
transaction on PostgreSQL and MariaDB, SQLite opened with mode=ro and query_only) and nothing is
ever executed for real. It finds every listed table and column (`where`, `set`, `table.column`
references), the masks' columns fit (masks.py's `unfit`), a where column's type that cannot hold
every value its identifier type allows (a note), the foreign keys that would stop a delete (a row
that stays, in a listed table or not, referring to a row deleted, in the order the connector uses),
and on PostgreSQL the user's privileges. A resolver's query is prepared (EXPLAIN), never run."""

from __future__ import annotations

import os
import re
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from connectors.base import Checked, Patterns
from connectors.checks import Found, misfit, misfit_note
from connectors.errors import PermanentError
from connectors.sql.config import Lookup, Mask, Reference, SqlConfig, SqlTable
from connectors.sql.engine import DEFAULT_DRIVERS, _sqlite_functions
from connectors.sql.masks import unfit
from connectors.sql.match import bindable
from connectors.sql.rows import SYSTEM_SCHEMAS

READ_ONLY = {"postgresql": "SET TRANSACTION READ ONLY", "mysql": "START TRANSACTION READ ONLY"}
LETS_GO = frozenset({"CASCADE", "SET NULL", "SET DEFAULT"})  # a foreign key that never stops a delete


class Sql(Protocol):
    """The sql connector as read here (connector.py imports this module, never the reverse)."""

    config: SqlConfig
    _schema: Any

    def _reflect(self, conn: sa.Connection) -> Any: ...

    def _one_table(self, conn: sa.Connection, name: str, columns: Iterable[str]) -> sa.Table: ...

    def _compared(self, conn: sa.Connection, column: sa.Column[Any], ref: Reference | Lookup) -> sa.ColumnElement[Any]:
        ...

    def _errors(self, secrets: Iterable[str], table: str | None = None) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key pointing at a listed table: the referring table (named as listed, when it is), the
    table referred to, the referring columns, and what a delete does to the rows referring."""

    referrer: str
    referred: str
    columns: tuple[str, ...]
    on_delete: str


def check(connector: Sql, patterns: Patterns | None) -> Checked:
    """Everything the system's config needs of the database, looked at read-only."""
    found, config = Found(), connector.config
    with connector._errors(()), read_only(config.url) as conn:
        tables = _tables(conn, config, found)
        for entry in config.tables:
            if entry.name in tables:
                _entry(conn, entry, tables, patterns or {}, found)
        if not found.problems:
            _order(conn, connector, found)
        _privileges(conn, config, tables, found)
    return found.checked()


def prepare(connector: Sql, query: str | Lookup, param: str) -> Checked:
    """Whether a resolver's query (or lookup) prepares on the system: EXPLAINed, never run."""
    with connector._errors(()), read_only(connector.config.url) as conn:
        try:
            if isinstance(query, Lookup):
                table = connector._one_table(conn, query.table, (query.column, query.select))
                compared = connector._compared(conn, table.c[query.column], query)
                statement = sa.select(table.c[query.select]).where(compared == sa.null())
                conn.exec_driver_sql("EXPLAIN " + str(statement.compile(
                    dialect=conn.dialect, compile_kwargs={"literal_binds": True})))
                return Checked()
            conn.execute(sa.text(f"EXPLAIN {query}"), {param: None})
        except PermanentError as exc:
            return Checked((str(exc).split(": ", 1)[-1],))
        except sa_exc.SQLAlchemyError as exc:
            return Checked((f"the query does not prepare: {_first_line(exc)}",))
    reads = re.match(r"\s*(SELECT|WITH)\b", query, re.IGNORECASE)
    return Checked(notes=() if reads else ("the query is not a SELECT: a resolver runs it, once per request",))


def _first_line(exc: sa_exc.SQLAlchemyError) -> str:
    """The driver's message, its first line alone (later lines, and SQLAlchemy's [SQL: ...], quote the query)."""
    source = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    lines = str(source).split("[SQL:")[0].strip().splitlines()
    return f"{type(source).__name__}: {lines[0] if lines else ''}"


@contextmanager
def read_only(url: str) -> Iterator[sa.Connection]:
    """A connection inside a read-only transaction, rolled back at the end."""
    engine = _engine(url)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            if conn.dialect.name in READ_ONLY:
                conn.exec_driver_sql(READ_ONLY[conn.dialect.name])
            yield conn
            transaction.rollback()
    finally:
        engine.dispose()


def _engine(url: str) -> sa.Engine:
    """An engine that cannot write: SQLite opened read-only (never created), any other with a time limit."""
    parsed = sa.make_url(url)
    parsed = parsed.set(drivername=DEFAULT_DRIVERS.get(parsed.drivername, parsed.drivername))
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise PermanentError("an in-memory SQLite database holds nothing to erase: name a database file")
        uri = Path(parsed.database).resolve().as_uri() + "?mode=ro"

        def connect() -> sqlite3.Connection:
            connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            connection.execute("PRAGMA query_only = ON")
            _sqlite_functions(connection)  # a resolver's lookup folds with them
            return connection

        return sa.create_engine("sqlite://", creator=connect, poolclass=NullPool)
    limit = {"connect_timeout": 10} if parsed.get_backend_name() in ("postgresql", "mysql", "mariadb") else {}
    return sa.create_engine(parsed, poolclass=NullPool, hide_parameters=True, connect_args=limit)


def _tables(conn: sa.Connection, config: SqlConfig, found: Found) -> dict[str, sa.Table]:
    """The listed tables that exist, reflected; each missing one is a problem."""
    inspector, tables = sa.inspect(conn), {}
    for name in dict.fromkeys(entry.name for entry in config.tables):
        schema, _, plain = name.rpartition(".")
        if not inspector.has_table(plain, schema=schema or None):
            found.problems.append(f"table {name!r} does not exist")
            continue
        tables[name] = sa.Table(plain, sa.MetaData(), schema=schema or None, autoload_with=conn)
    return tables


def _entry(conn: sa.Connection, entry: SqlTable, tables: Mapping[str, sa.Table], patterns: Patterns,
           found: Found) -> None:
    """One entry's columns: there, of a type that holds what is compared, fit for their masks."""
    table, place = tables[entry.name], f"table {entry.name!r}"
    for column, ref in entry.where:
        if column not in table.c:
            found.problems.append(f"{place} has no column {column!r} (where)")
        elif ref.identifier:
            stored = table.c[column]
            example = misfit(patterns.get(ref.identifier), _holds(stored, conn.dialect.name))
            if example is not None:
                found.notes.append(misfit_note(f"{place} column {column!r}", _type(conn, stored), ref.identifier,
                                               example))
        elif ref.table in tables and ref.column not in tables[ref.table].c:
            found.problems.append(f"{place} where.{column} refers to {ref.table}.{ref.column}, a column that "
                                  "does not exist")
    for column, value in entry.assign:
        if column not in table.c:
            found.problems.append(f"{place} has no column {column!r} (set)")
        elif isinstance(value, Mask) and (why := unfit(value, table.c[column], conn.dialect.name)):
            found.problems.append(f"{place} column {column!r}: {why}")


def _holds(column: sa.Column[Any], dialect: str) -> Callable[[str], bool]:
    """Whether the column can hold a value as written: the connector's own conversion takes it."""
    return lambda value: bool(bindable(column, [value], dialect))


def _type(conn: sa.Connection, column: sa.Column[Any]) -> str:
    try:
        return str(column.type.compile(dialect=conn.dialect))
    except sa_exc.CompileError:
        return type(column.type).__name__


def _order(conn: sa.Connection, connector: Sql, found: Found) -> None:
    """The foreign keys that would stop a listed table's delete: a referring row that stays (its table not
    listed, only anonymized without clearing the key, or retained), or one the connector's order deletes after."""
    with warnings.catch_warnings():  # a cycle of foreign keys: sorted anyhow, and told below
        warnings.simplefilter("ignore", sa_exc.SAWarning)
        try:
            schema = connector._reflect(conn)
        except PermanentError as exc:
            found.problems.append(str(exc).split(": ", 1)[-1])
            return
        finally:
            connector._schema = None  # reflected inside a transaction this probe rolls back: not kept
    entries, now = connector.config.tables, datetime.now(UTC)
    rank: dict[str, list[int]] = {}
    for position, i in enumerate(schema.apply_order):
        rank.setdefault(entries[i].name, []).append(position)
    deleted = {e.name for e in entries if e.action == "delete"}
    for key in _referring(conn, entries):
        if key.referred in deleted and key.on_delete not in LETS_GO and key.referrer != key.referred:
            found.problems += _blocks(key, [e for e in entries if e.name == key.referrer], rank, now)


def _blocks(key: ForeignKey, referrers: list[SqlTable], rank: Mapping[str, list[int]], now: datetime) -> list[str]:
    """Why a foreign key would stop deleting the subject's rows of the table it refers to, if it would."""
    stops = f"the foreign key {key.referrer}({', '.join(key.columns)}) -> {key.referred} stops the delete: "
    subjects = f"the subject's {key.referred!r} rows"
    if not referrers:
        return [f"{stops}{key.referrer!r} is not listed, so its rows referring to {subjects} stay (list it, or "
                "give the key ON DELETE CASCADE or SET NULL)"]
    for entry in referrers:
        if entry.retain and entry.retain.holds(now):
            return [f"{stops}{key.referrer!r} is retained ({entry.retain.describe()}), its rows still referring "
                    f"to {subjects}"]
    if not any(e.action == "delete" or all(dict(e.literals).get(c, 0) is None for c in key.columns)
               for e in referrers):
        return [f"{stops}{key.referrer!r} ({referrers[0].action}) keeps its rows, still referring to {subjects} "
                f'(set {key.columns[0]} = "null" there, or delete them)']
    if max(rank[key.referrer]) > min(rank[key.referred]):
        return [f"{stops}the foreign keys form a cycle, and {key.referred!r} is deleted before {key.referrer!r}"]
    return []


def _referring(conn: sa.Connection, entries: tuple[SqlTable, ...]) -> list[ForeignKey]:
    """Every foreign key pointing at a listed table, from any table of the default schema, the listed
    tables' schemas and, on PostgreSQL, every schema; tables named as listed, when they are."""
    inspector = sa.inspect(conn)
    default = inspector.default_schema_name

    def place(name: str, schema: str | None) -> tuple[str, str | None]:
        return name, schema if schema != default else None

    listed = {place(*_split(e.name)): e.name for e in entries}
    schemas: set[str | None] = {None, *(schema for _, schema in listed)}
    if conn.dialect.name == "postgresql":
        schemas |= {s for s in inspector.get_schema_names() if s not in SYSTEM_SCHEMAS and s != default}
    found = []
    for schema in schemas:
        for (_, name), keys in _foreign_keys(conn, inspector, schema).items():
            for fk in keys:
                referred = listed.get(place(fk["referred_table"], fk["referred_schema"]))
                if referred is None:
                    continue
                where = place(name, schema)
                referrer = listed.get(where) or (f"{where[1]}.{name}" if where[1] else name)
                on_delete = str(fk.get("options", {}).get("ondelete") or "NO ACTION").upper()
                found.append(ForeignKey(referrer, referred, tuple(fk["constrained_columns"]), on_delete))
    return found


def _split(name: str) -> tuple[str, str | None]:
    """A listed name as (table, schema or None)."""
    schema, _, plain = name.rpartition(".")
    return plain, schema or None


def _foreign_keys(conn: sa.Connection, inspector: Any, schema: str | None) -> dict[Any, list[dict[str, Any]]]:
    """The schema's foreign keys by table; on SQLite read from its pragma, which alone tells ON DELETE."""
    if conn.dialect.name != "sqlite":
        return dict(inspector.get_multi_foreign_keys(schema=schema))
    keys: dict[Any, list[dict[str, Any]]] = {}
    for name in inspector.get_table_names(schema=schema):
        grouped: dict[int, dict[str, Any]] = {}
        quoted = conn.dialect.identifier_preparer.quote(name)
        for row in conn.exec_driver_sql(f"PRAGMA foreign_key_list({quoted})"):
            fk = grouped.setdefault(row[0], {"referred_table": row[2], "referred_schema": None,
                                             "constrained_columns": [], "options": {"ondelete": row[6]}})
            fk["constrained_columns"].append(row[3])
        keys[(schema, name)] = list(grouped.values())
    return keys


def _privileges(conn: sa.Connection, config: SqlConfig, tables: Mapping[str, sa.Table], found: Found) -> None:
    """What the user may do: asked on PostgreSQL, the file's mode on SQLite, a note elsewhere."""
    if conn.dialect.name == "sqlite":
        database = Path(sa.make_url(config.url).database or "").resolve()
        if not (os.access(database, os.W_OK) and os.access(database.parent, os.W_OK)):
            found.problems.append("the database file (or its folder, for the journal) is not writable by this user")
        return
    if conn.dialect.name != "postgresql":
        found.notes.append(f"privileges not checked: {conn.dialect.name} tells them only as GRANT statements")
        return
    for entry in config.tables:
        if entry.name not in tables:
            continue
        table = tables[entry.name]
        name = conn.dialect.identifier_preparer.format_table(table)
        asked = [("SELECT", column) for column, _ in entry.where] + [("UPDATE", c) for c, _ in entry.assign]
        asked = [(what, column) for what, column in asked if column in table.c]  # a missing one: told already
        missing = [f"{what} {column}" for what, column in dict.fromkeys(asked) if not conn.execute(
            sa.text("SELECT has_column_privilege(:t, :c, :p)"), {"t": name, "c": column, "p": what}).scalar()]
        if entry.action != "anonymize" and not conn.execute(
                sa.text("SELECT has_table_privilege(:t, 'DELETE')"), {"t": name}).scalar():
            missing.append("DELETE")
        if missing:
            found.problems.append(f"table {entry.name!r}: the database user lacks the privilege to "
                                  f"{', '.join(missing)}")
