"""A database as discovery sees it: opened read-only (a read-only transaction; SQLite opened with
mode=ro and query_only), its tables reflected (column kinds, primary keys, foreign keys, and links
inferred from column names where none is declared), and at most SAMPLE_ROWS rows of each table's text
columns tallied against the identifier types' patterns. Values are counted, never kept or logged."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from connectors.sql.engine import DEFAULT_DRIVERS
from worker.discover.classify import snake
from worker.discover.identifiers import IdType
from worker.discover.model import SAMPLE_ROWS, Column, Link, Table, tally
from worker.errors import ErasureError, InputError

log = structlog.get_logger("erasure.discover")
READ_ONLY = {"postgresql": "SET TRANSACTION READ ONLY", "mysql": "START TRANSACTION READ ONLY", "sqlite": ""}
STANDARD_READ_ONLY = "SET TRANSACTION READ ONLY"  # any other engine: the SQL standard's, or it fails


def parse_url(raw: str) -> sa.URL:
    """The URL given to --url; InputError (never quoting it: it may hold a password) if it is none."""
    try:
        return sa.make_url(raw)
    except sa_exc.ArgumentError:
        raise InputError("--url: not a SQLAlchemy URL") from None


def shown(url: sa.URL) -> str:
    """The URL as errors and logs show it: the password as ***."""
    return url.render_as_string(hide_password=True)


@contextmanager
def read_only(url: sa.URL) -> Iterator[sa.Connection]:
    """A connection inside a read-only transaction, rolled back at the end; ErasureError naming the URL
    (without its password) if the database cannot be reached."""
    engine = _engine(url)
    try:
        try:
            conn = engine.connect()
        except sa_exc.SQLAlchemyError as exc:
            raise ErasureError(f"cannot connect to {shown(url)}: {_first_line(exc, url)}") from None
        with conn, conn.begin() as transaction:
            statement = READ_ONLY.get(conn.dialect.name, STANDARD_READ_ONLY)  # SQLite: opened read-only
            if statement:
                conn.exec_driver_sql(statement)
            yield conn
            transaction.rollback()
    finally:
        engine.dispose()


def _engine(url: sa.URL) -> sa.Engine:
    """An engine that never writes: SQLite opened read-only with query_only, any other with hidden parameters."""
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise InputError("--url: a SQLite URL must name a database file")
        uri = Path(url.database).resolve().as_uri() + "?mode=ro"

        def connect() -> sqlite3.Connection:
            connection = sqlite3.connect(uri, uri=True)
            connection.execute("PRAGMA query_only = ON")
            return connection

        return sa.create_engine("sqlite://", creator=connect, poolclass=NullPool)
    url = url.set(drivername=DEFAULT_DRIVERS.get(url.drivername, url.drivername))
    timeout = {"connect_timeout": 10} if url.get_backend_name() in ("postgresql", "mysql", "mariadb") else {}
    try:
        return sa.create_engine(url, poolclass=NullPool, hide_parameters=True, connect_args=timeout)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise InputError(f"--url {shown(url)}: {_first_line(exc, url)}") from None


def _first_line(exc: BaseException, url: sa.URL) -> str:
    """The driver's first line of an error, with the password taken out if it appears."""
    source = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    lines = str(source).split("[SQL:")[0].strip().splitlines()
    text = f"{type(source).__name__}: {lines[0].strip() if lines else ''}".rstrip(": ")
    return text.replace(url.password, "***") if isinstance(url.password, str) and url.password else text


def reflect(conn: sa.Connection, types: list[IdType]) -> dict[str, Table]:
    """Every table of the default schema: columns, keys, links (declared, then inferred), sampled tallies."""
    inspector = sa.inspect(conn)
    tables = {name: _table(inspector, name) for name in sorted(inspector.get_table_names())}
    _infer_links(tables)
    for table in tables.values():
        _sample(conn, table, types)
    return tables


def _table(inspector: Any, name: str) -> Table:
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
    unique |= {tuple(i["column_names"]) for i in inspector.get_indexes(name) if i.get("unique")}
    primary = tuple(inspector.get_pk_constraint(name).get("constrained_columns") or ())
    columns = {c["name"]: Column(c["name"], _kind(c["type"]), bool(c.get("nullable", True)),
                                 (c["name"],) in unique or primary == (c["name"],))
               for c in inspector.get_columns(name)}
    table = Table(name, columns, primary)
    for key in inspector.get_foreign_keys(name):
        source, target = key["constrained_columns"], key["referred_columns"]
        if len(source) == 1 and len(target) == 1 and not key.get("referred_schema"):
            rule = str((key.get("options") or {}).get("ondelete") or "").upper()
            table.links.append(Link(source[0], key["referred_table"], target[0], declared=True, on_delete=rule))
        else:
            table.unfollowed.append((key["referred_table"],
                                     f"({', '.join(source)}) -> {key['referred_table']}({', '.join(target)})"))
    return table


def _kind(kind: Any) -> str:
    """The kind of a SQLAlchemy type (an untyped SQLite column counts as text)."""
    for cls, name in ((sa.Boolean, "boolean"), (sa.Integer, "integer"), (sa.Numeric, "number"),
                      (sa.DateTime, "datetime"), (sa.Date, "date"), (sa.Uuid, "uuid"), (sa.String, "text"),
                      (sa.types.NullType, "text")):
        if isinstance(kind, cls):
            return name
    return "other"


def _infer_links(tables: dict[str, Table]) -> None:
    """Links a column's name implies where no foreign key is declared: `customer_id` or
    `billing_customer_id` -> customer(s).id, when that table's single-column key has the same kind."""
    by_name = {snake(name): table for name, table in tables.items()}
    for table in tables.values():
        for column in table.columns.values():
            name = snake(column.name)
            if table.link(column.name) or not name.endswith("_id"):
                continue
            tokens = name.removesuffix("_id").split("_")
            for start in range(len(tokens)):
                target = _named("_".join(tokens[start:]), by_name)
                key = target.single_key if target and target.name != table.name else None
                if target and key and target.columns[key].kind == column.kind:
                    table.links.append(Link(column.name, target.name, key, declared=False))
                    break


def _named(stem: str, by_name: dict[str, Table]) -> Table | None:
    """The table a stem names: itself or a plural of it."""
    plurals = (stem, stem + "s", stem + "es", stem[:-1] + "ies" if stem.endswith("y") else stem)
    return next((by_name[p] for p in plurals if p in by_name), None)


def _sample(conn: sa.Connection, table: Table, types: list[IdType]) -> None:
    """Tally at most SAMPLE_ROWS rows of the table's text columns that are not links."""
    names = [c.name for c in table.columns.values() if c.kind == "text" and not table.link(c.name)]
    if not names:
        return
    source = sa.table(table.name, *(sa.column(name) for name in names))
    rows = conn.execute(sa.select(*source.c).limit(SAMPLE_ROWS)).all()
    table.sampled = len(rows)
    table.tallies = {name: tally((row[i] for row in rows), types) for i, name in enumerate(names)}
    log.info("discover.sampled", table=table.name, rows=len(rows), columns=len(names))


def overlap(conn: sa.Connection, table: str, column: str, other: str, other_column: str) -> tuple[int, int] | None:
    """Of at most SAMPLE_ROWS non-null values of table.column, how many are found in other.other_column;
    and how many were sampled. Counted by the database: no value leaves it. None if the engine cannot
    compare the two columns (a PostgreSQL enum and a varchar, say)."""
    source = sa.table(table, sa.column(column))
    sample = sa.select(source.c[column].label("v")).where(source.c[column].is_not(None)).limit(SAMPLE_ROWS).subquery()
    target = sa.table(other, sa.column(other_column))
    # on PostgreSQL a failed statement ends the transaction: a savepoint keeps the rest of the reading going
    guard: AbstractContextManager[Any] = conn.begin_nested() if conn.dialect.name == "postgresql" else nullcontext()
    try:
        with guard:
            sampled = conn.execute(sa.select(sa.func.count()).select_from(sample)).scalar_one()
            found = conn.execute(sa.select(sa.func.count()).select_from(sample)
                                 .where(sample.c.v.in_(sa.select(target.c[other_column])))).scalar_one()
    except sa_exc.DBAPIError:
        log.info("discover.not_compared", table=table, column=column, other=other, other_column=other_column)
        return None
    return int(found), int(sampled)
