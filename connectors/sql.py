"""The sql connector: deletes or anonymizes a subject's rows in any SQLAlchemy database,
every listed table in one transaction, in an order that satisfies foreign keys."""

from __future__ import annotations

import graphlib
import itertools
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Literal, Self

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql

from connectors.base import (
    ConfigReader,
    Connector,
    Outcome,
    Retention,
    Subject,
    SystemConfig,
    as_integer,
    retry_blips,
)
from connectors.normalize import TRIM_CHARS, Fold, fold_text
from worker.errors import PermanentError, TransientError, one_line

PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,40})?")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TABLE_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*")
SCALARS = (str, int, float, bool, date, time)  # what a TOML value in `set` may be
CHUNK = 500  # values per IN list: well under every engine's limit on bound parameters
BIGINT = 2**63  # no integer column holds a value outside [-BIGINT, BIGINT)
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}
Condition = sa.ColumnElement[bool]
TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)


@dataclass(frozen=True)
class Reference:
    """What a `where` column equals: an identifier type's values (compared after the type's fold,
    unless the column is stored folded already: `exact`), or a listed table's column."""

    identifier: str = ""
    table: str = ""
    column: str = ""
    fold: Fold = ()
    exact: bool = False


@dataclass(frozen=True)
class Lookup:
    """A resolver written as names: `SELECT select FROM table WHERE column = :value`, the column
    folded as the value's identifier type is (unless `exact`)."""

    table: str
    column: str
    select: str
    fold: Fold = ()
    exact: bool = False


@dataclass(frozen=True)
class SqlTable:
    """One `[[systems.tables]]` entry: which rows are the subject's and what becomes of them."""

    name: str
    where: tuple[tuple[str, Reference], ...]
    action: Literal["delete", "anonymize"]
    assign: tuple[tuple[str, Any], ...] = ()  # the `set` table; None is SQL NULL
    retain: Retention | None = None  # kept by law until a date (or for good): matched, counted, not touched


@dataclass(frozen=True)
class SqlConfig(SystemConfig):
    """A SQL database and the tables that hold the subject's rows."""

    url: str
    tables: tuple[SqlTable, ...]

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "sql"`."""
        reader.only("name", "kind", "url", "tables")
        name = reader.text("name")
        url = reader.text("url")
        try:
            sa.make_url(url)
        except sa_exc.ArgumentError as exc:  # the URL may hold a password: never quote it
            raise reader.error("url", "not a SQLAlchemy URL") from exc
        raw_tables = reader.require("tables", list)
        if not raw_tables:
            raise reader.error("tables", "lists no table")
        listed = {raw.get("name") for raw in raw_tables if isinstance(raw, Mapping)}
        tables = tuple(_read_table(reader.child("tables", t, i), listed) for i, t in enumerate(raw_tables))
        try:
            reference_order(tables)
        except graphlib.CycleError as exc:
            cycle = " -> ".join(tables[i].name for i in exc.args[1])
            raise reader.error("tables", f"reference cycle between tables: {cycle}") from exc
        return cls(name=name, kind="sql", url=url, tables=tables)

    @property
    def identifier_types(self) -> frozenset[str]:
        """Every identifier type some `where` refers to."""
        return frozenset(ref.identifier for t in self.tables for _, ref in t.where if ref.identifier)


def _read_table(reader: ConfigReader, listed: set[Any]) -> SqlTable:
    """One entry of `tables`."""
    reader.only("name", "where", "action", "set", "retain", "match")
    name = reader.text("name")
    if not TABLE_NAME.fullmatch(name):
        raise reader.error("name", f"{name!r} is not a plain name (letters, digits, _; or schema.table)")
    raw_where = reader.require("where", dict)
    if not raw_where:
        raise reader.error("where", "names no column: it would match every row")
    exact = reader.exact_columns(raw_where)
    where = tuple(
        (_column(reader, "where", column), _reference(reader, f"where.{column}", ref, listed, column in exact))
        for column, ref in raw_where.items()
    )
    action, retain = reader.text("action"), reader.retention()
    if action == "delete":
        if "set" in reader.raw:
            raise reader.error("set", "only an anonymize action sets columns")
        return SqlTable(name, where, "delete", retain=retain)
    if action != "anonymize":
        raise reader.error("action", f"must be 'delete' or 'anonymize', not {action!r}")
    raw_set = reader.require("set", dict)
    if not raw_set:
        raise reader.error("set", "sets no column")
    assign = tuple((_column(reader, "set", col), _value(reader, col, v)) for col, v in raw_set.items())
    return SqlTable(name, where, "anonymize", assign, retain)


def _column(reader: ConfigReader, key: str, column: str) -> str:
    """A column name that is a plain identifier."""
    if not NAME.fullmatch(column):
        raise reader.error(key, f"{column!r} is not a plain column name (letters, digits, _)")
    return column


def _reference(reader: ConfigReader, key: str, ref: Any, listed: set[Any], exact: bool) -> Reference:
    """An identifier type (with its fold), or `table.column` of a table listed in the same system."""
    if isinstance(ref, str) and ref not in reader.identifier_types and "." in ref:
        table, _, column = ref.rpartition(".")
        if not TABLE_NAME.fullmatch(table) or not NAME.fullmatch(column):
            raise reader.error(key, f"{ref!r} is neither an identifier type nor table.column")
        if table not in listed:
            raise reader.error(key, f"reference to table {table!r} which is not listed")
        return Reference(table=table, column=column)
    identifier = reader.identifier(key, ref)
    return Reference(identifier=identifier, fold=reader.fold(identifier), exact=exact)


def _value(reader: ConfigReader, column: str, value: Any) -> Any:
    """A value of `set`: "null" is SQL NULL, any other TOML scalar is itself."""
    if value == "null":
        return None
    if not isinstance(value, SCALARS):
        raise reader.error(f"set.{column}", 'must be a string, number, boolean, date or "null"')
    return value


def reference_order(tables: tuple[SqlTable, ...]) -> tuple[int, ...]:
    """Entry indices such that a table comes after every table its `where` refers to."""
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for i, entry in enumerate(tables):
        sorter.add(i, *(j for _, ref in entry.where for j, t in enumerate(tables) if t.name == ref.table))
    return tuple(sorter.static_order())


@dataclass(frozen=True)
class Schema:
    """The listed tables as reflected, and the entry order that applies actions children first."""

    tables: Mapping[str, sa.Table]
    apply_order: tuple[int, ...]


class SqlConnector(Connector):
    """Deletes or anonymizes a subject's rows in one SQL database, all or nothing."""

    kind = "sql"
    config_class = SqlConfig
    config: SqlConfig

    def __init__(self, config: SqlConfig) -> None:
        super().__init__(config)
        self._engine: sa.Engine | None = None
        self._schema: Schema | None = None
        self._nfc: bool | None = None

    @property
    def engine(self) -> sa.Engine:
        """The engine, created on first use."""
        if self._engine is None:
            self._engine = create_engine(self.config.url)
        return self._engine

    @retry_blips
    def erase(self, subject: Subject) -> Outcome:
        """Apply every table's action to the subject's rows in one transaction. A table under a
        retention is left as it is: its rows are counted and the system reported exempt."""
        applied: list[dict[str, Any]] = []
        held: list[tuple[str, Retention, int]] = []
        now = datetime.now(UTC)
        with self._errors(subject.all_values()), self.engine.begin() as conn:
            schema = self._reflect(conn)
            matches = self._match(conn, schema, subject)
            for i in schema.apply_order:
                entry, table = self.config.tables[i], schema.tables[self.config.tables[i].name]
                if entry.retain and entry.retain.holds(now):
                    kept = self._left(conn, table, entry, matches[i], subject)
                    applied.append({"table": entry.name, "action": "retain", "rows": 0, "rows_kept": kept,
                                    "retained": entry.retain.to_json()})
                    held += [(entry.name, entry.retain, kept)] if kept else []
                    continue
                with self._errors(subject.all_values(), entry.name):
                    rows = sum(conn.execute(_statement(table, entry, match)).rowcount for match in matches[i])
                applied.append({"table": entry.name, "action": entry.action, "rows": rows})
        return _outcome(applied, held)

    @retry_blips
    def verify(self, subject: Subject) -> int:
        """Rows still matching: any in a delete table, those not yet anonymized in the others
        (a table under a retention keeps its rows: not counted)."""
        left, now = 0, datetime.now(UTC)
        with self._errors(subject.all_values()), self.engine.connect() as conn:
            schema = self._reflect(conn)
            matches = self._match(conn, schema, subject)
            for i, entry in enumerate(self.config.tables):
                if not (entry.retain and entry.retain.holds(now)):
                    left += self._left(conn, schema.tables[entry.name], entry, matches[i], subject)
        return left

    def _left(self, conn: sa.Connection, table: sa.Table, entry: SqlTable, matches: list[Condition],
              subject: Subject) -> int:
        """The subject's rows in one table that its action has yet to delete or anonymize."""
        count = sa.select(sa.func.count()).select_from(table)
        with self._errors(subject.all_values(), entry.name):
            return sum(conn.execute(count.where(match, *_pending(table, entry))).scalar_one() for match in matches)

    def resolve(self, query: str | Lookup, param: str, values: Iterable[str]) -> list[str]:
        """A resolver run once per value: the first column of every row its query (or its lookup,
        with the column folded as the value was) returns, as str, deduplicated."""
        if isinstance(query, Lookup):
            return self._look_up(query, tuple(values))
        return self._resolve(query, param, tuple(values))

    def close(self) -> None:
        """Dispose of the engine and its pooled connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @retry_blips
    def _resolve(self, query: str, param: str, values: tuple[str, ...]) -> list[str]:
        found: dict[str, None] = {}
        with self._errors(values), self.engine.connect() as conn:
            for value in values:
                for row in conn.execute(sa.text(query), {param: value}):
                    if row[0] is not None:
                        found[str(row[0])] = None
        return list(found)

    @retry_blips
    def _look_up(self, lookup: Lookup, values: tuple[str, ...]) -> list[str]:
        found: dict[str, None] = {}
        with self._errors(values, lookup.table), self.engine.connect() as conn:
            table = self._one_table(conn, lookup.table, (lookup.column, lookup.select))
            column = table.c[lookup.column]
            for match in _conditions([(self._compared(conn, column, lookup), _bindable(column, values))],
                                     exact_text=conn.dialect.name == "mysql"):
                for (value,) in conn.execute(sa.select(table.c[lookup.select]).where(match).distinct()):
                    if value is not None:
                        found[str(value)] = None
        return list(found)

    def _one_table(self, conn: sa.Connection, name: str, columns: Iterable[str]) -> sa.Table:
        """One table reflected, with the columns asked for; PermanentError if either is missing."""
        schema, _, plain_name = name.rpartition(".")
        if not sa.inspect(conn).has_table(plain_name, schema=schema or None):
            raise PermanentError(f"sql system {self.config.name!r}: table {name!r} does not exist")
        table = sa.Table(plain_name, sa.MetaData(), schema=schema or None, autoload_with=conn)
        for column in columns:
            if column not in table.c:
                raise PermanentError(f"sql system {self.config.name!r}: table {name!r} has no column {column!r}")
        return table

    def _reflect(self, conn: sa.Connection) -> Schema:
        """The listed tables, reflected once; a missing table or column is a PermanentError."""
        if self._schema is not None:
            return self._schema
        entries, inspector, metadata = self.config.tables, sa.inspect(conn), sa.MetaData()
        names = list(dict.fromkeys(entry.name for entry in entries))
        by_schema: dict[str | None, list[str]] = {}
        for name in names:
            schema, _, table = name.rpartition(".")
            if not inspector.has_table(table, schema=schema or None):
                raise PermanentError(f"sql system {self.config.name!r}: table {name!r} does not exist")
            by_schema.setdefault(schema or None, []).append(table)
        for schema_name, only in by_schema.items():
            metadata.reflect(conn, schema=schema_name, only=only, views=True)
        tables = {name: metadata.tables[name] for name in names}
        for entry in entries:
            needed = [(entry.name, column) for column, _ in (*entry.where, *entry.assign)]
            needed += [(ref.table, ref.column) for _, ref in entry.where if ref.table]
            for name, column in needed:
                if column not in tables[name].c:
                    where = f"sql system {self.config.name!r}: table {name!r}"
                    raise PermanentError(f"{where} has no column {column!r}")
        rank = {table: i for i, table in enumerate(reversed(metadata.sorted_tables))}
        order = sorted(range(len(entries)), key=lambda i: rank[tables[entries[i].name]])
        self._schema = Schema(tables, tuple(order))
        return self._schema

    def _match(self, conn: sa.Connection, schema: Schema, subject: Subject) -> list[list[Condition]]:
        """Each entry's match conditions, one per chunk ([] matches nothing), with `table.column`
        references resolved from the referenced rows as they are now, before anything changes."""
        entries = self.config.tables
        wanted = sorted({(ref.table, ref.column) for entry in entries for _, ref in entry.where if ref.table})
        found: dict[tuple[str, str], dict[Any, None]] = {key: {} for key in wanted}
        matches: list[list[Condition]] = [[] for _ in entries]
        for i in reference_order(entries):
            entry, table = entries[i], schema.tables[entries[i].name]
            pairs = [
                (self._compared(conn, table.c[column], ref), _bindable(table.c[column], subject.values(ref.identifier)))
                if ref.identifier
                else (table.c[column], list(found[(ref.table, ref.column)]))
                for column, ref in entry.where
            ]
            matches[i] = _conditions(pairs, exact_text=conn.dialect.name == "mysql")
            columns = [column for name, column in wanted if name == entry.name]
            if not columns:
                continue
            with self._errors(subject.all_values(), entry.name):
                for match in matches[i]:
                    query = sa.select(*(table.c[c] for c in columns)).where(match).distinct()
                    for row in conn.execute(query):
                        for column, value in zip(columns, row, strict=True):
                            if value is not None:
                                found[(entry.name, column)][value] = None
        return matches

    def _compared(self, conn: sa.Connection, column: sa.Column[Any], ref: Reference | Lookup) -> sa.ColumnElement[Any]:
        """The column as a request's value is compared with it: folded as the value was, if it holds text."""
        if ref.exact or not _textual(column, conn.dialect.name):
            return column
        return folded(column, ref.fold, conn.dialect.name, nfc=self._unicode(conn))

    def _unicode(self, conn: sa.Connection) -> bool:
        """Whether the engine can NFC-normalize stored text (PostgreSQL only in a UTF8 database)."""
        if self._nfc is None:
            if conn.dialect.name == "postgresql":
                self._nfc = conn.exec_driver_sql("SHOW server_encoding").scalar_one() == "UTF8"
            else:
                self._nfc = conn.dialect.name == "sqlite"
        return self._nfc

    @contextmanager
    def _errors(self, secrets: Iterable[str], table: str | None = None) -> Iterator[None]:
        """Turn SQLAlchemy's errors into ours, naming system and table and never a value."""
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            place = f"sql system {self.config.name!r}" + (f", table {table!r}" if table else "")
            transient = isinstance(exc, TRANSIENT) or getattr(exc, "connection_invalidated", False)
            kind = TransientError if transient else PermanentError
            error = kind(f"{place}: {_reason(exc, secrets)}")
            raise kind(one_line(error)) from exc


def _outcome(applied: list[dict[str, Any]], held: list[tuple[str, Retention, int]]) -> Outcome:
    """The erase's outcome: exempt if a retained table kept some of the subject's rows, rechecked
    when the first retention with an end is over."""
    items = sum(a["rows"] for a in applied)
    if not held:
        return Outcome(items, {"tables": applied})
    reason = "; ".join(f"table {name} {retain.describe()} ({kept} row{'' if kept == 1 else 's'} kept)"
                       for name, retain, kept in held)
    ends = [retain.ends_at for _, retain, _ in held if retain.ends_at]
    return Outcome(items, {"tables": applied}, exempt_reason=reason, recheck_at=min(ends, default=None))


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


def _textual(column: sa.Column[Any], dialect: str) -> bool:
    """Whether the column holds text, which a fold applies to (an integer column is compared as a number;
    a SQLite column declared without a type may hold text)."""
    return isinstance(column.type, sa.String) or dialect == "sqlite" and isinstance(column.type, sa.types.NullType)


SQL_TRIM = "E'" + "".join(f"\\{ord(c):03o}" for c in TRIM_CHARS) + "'"  # PostgreSQL: the same characters
MYSQL_TRIM = "'^[[:space:]]+|[[:space:]]+$'"  # MySQL and MariaDB: [[:space:]] is ASCII whitespace


def folded(column: sa.ColumnElement[Any], fold: Fold, dialect: str, nfc: bool = True) -> sa.ColumnElement[Any]:
    """The stored value as the request's was folded: NFC (where the engine can), then trim, lower or upper.
    On PostgreSQL `lower(btrim(normalize(col, NFC), ...))`: an expression index must be on the same text."""
    expr = column
    if dialect == "mysql":  # lower() leaves binary strings as they are: compare as utf8mb4 text
        expr = sa.cast(expr, mysql.CHAR(charset="utf8mb4"))
    if nfc and dialect == "postgresql":
        expr = sa.func.normalize(expr, sa.literal_column("NFC"))
    elif dialect == "sqlite":  # SQLite's own lower() and upper() know ASCII alone: Python's, registered
        expr = sa.func.erasure_nfc(expr)
    for step in fold:
        if step == "trim":
            if dialect == "postgresql":
                expr = sa.func.btrim(expr, sa.literal_column(SQL_TRIM))
            elif dialect == "mysql":
                expr = sa.func.regexp_replace(expr, sa.literal_column(MYSQL_TRIM), sa.literal_column("''"))
            elif dialect == "sqlite":
                expr = sa.func.erasure_trim(expr)
            else:
                expr = sa.func.trim(expr)
        else:
            expr = getattr(sa.func, f"erasure_{step}" if dialect == "sqlite" else step)(expr)
    return sa.type_coerce(expr, column.type)  # values are bound as the column's type, not a guessed one


def _sqlite_functions(dbapi_connection: Any) -> None:
    """The folds as SQLite functions, with Python's Unicode rules (the request's side is folded by them)."""
    for name, fold in (("erasure_nfc", ()), ("erasure_trim", ("trim",)), ("erasure_lower", ("lower",)),
                       ("erasure_upper", ("upper",))):
        dbapi_connection.create_function(
            name, 1, lambda value, fold=fold: fold_text(value, fold) if isinstance(value, str) else value,
            deterministic=True)


def _bindable(column: sa.Column[Any], values: Iterable[str]) -> list[Any]:
    """The values a column may equal, as its type; one that is not plainly of that type is
    dropped, so an engine never casts "42abc" into 42. Other columns take the string."""
    converted = (_as_type(column.type, value) for value in values)
    return list(dict.fromkeys(v for v in converted if v is not None))


def _as_type(kind: sa.types.TypeEngine[Any], value: str) -> Any:
    """The value as the column's number, date or UUID type (None if it is not one), else as is."""
    if isinstance(kind, sa.Integer):
        number = as_integer(value)
        return number if number is not None and -BIGINT <= number < BIGINT else None
    if isinstance(kind, sa.Numeric):  # Float too; MariaDB would read "42abc" as 42
        return Decimal(value) if PLAIN_DECIMAL.fullmatch(value) else None
    if isinstance(kind, sa.Date) and not isinstance(kind, sa.DateTime):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        return day if day.isoformat() == value else None
    if isinstance(kind, sa.Uuid):
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            return None
        return parsed if kind.as_uuid else str(parsed)
    return value


def _conditions(pairs: list[tuple[sa.ColumnElement[Any], list[Any]]], exact_text: bool = False) -> list[Condition]:
    """`column IN (values)` ANDed over the columns, chunked; [] if some column has no value.
    With exact_text (MySQL, MariaDB), text must also be equal byte for byte: their default
    collations ignore case and trailing spaces, so `a@b.c` would also take `A@B.C `."""
    if not pairs or any(not values for _, values in pairs):
        return []  # an empty condition would match every row: match nothing instead
    chunked = [[(col, values[i : i + CHUNK]) for i in range(0, len(values), CHUNK)] for col, values in pairs]
    conditions = []
    for combo in itertools.product(*chunked):
        parts: list[Condition] = [col.in_(_bind(col, chunk, expanding=True)) for col, chunk in combo]
        if exact_text:
            parts += [_same_bytes(col, chunk) for col, chunk in combo if all(isinstance(v, str) for v in chunk)]
        conditions.append(sa.and_(*parts))
    return conditions


def _same_bytes(column: sa.ColumnElement[Any], values: list[str]) -> Condition:
    """The column, as UTF-8 bytes, is one of the values' bytes (MySQL and MariaDB)."""
    as_bytes = sa.cast(sa.cast(column, mysql.CHAR(charset="utf8mb4")), sa.LargeBinary)
    return as_bytes.in_(sa.bindparam(None, [v.encode() for v in values], type_=sa.LargeBinary, expanding=True))


def _pending(table: sa.Table, entry: SqlTable) -> list[Condition]:
    """For anonymize, the row still differs from its target values; nothing more for delete."""
    if entry.action == "delete":
        return []
    return [sa.or_(*(table.c[c].is_distinct_from(_bind(table.c[c], value)) for c, value in entry.assign))]


def _bind(column: sa.ColumnElement[Any], value: Any, expanding: bool = False) -> sa.BindParameter[Any]:
    """A bound parameter of the column's own type, not one guessed from the Python value."""
    return sa.bindparam(None, value, type_=column.type, expanding=expanding)


def _statement(table: sa.Table, entry: SqlTable, match: Condition) -> sa.Executable:
    """The DELETE or UPDATE of the matched rows (an UPDATE skips rows already anonymized)."""
    if entry.action == "delete":
        return sa.delete(table).where(match)
    values = {table.c[column]: value for column, value in entry.assign}
    return sa.update(table).where(match, *_pending(table, entry)).values(values)


def _reason(exc: sa_exc.SQLAlchemyError, secrets: Iterable[str]) -> str:
    """The driver's first line, without the SQL, the parameters or any of the given values."""
    source = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    lines = str(source).split("[SQL:")[0].strip().splitlines()  # later lines quote row values
    text = f"{type(source).__name__}: {lines[0] if lines else ''}"
    for secret in sorted(secrets, key=len, reverse=True):
        # a short value only as a whole token, so that "1" leaves "127.0.0.1" readable
        pattern = re.escape(secret) if len(secret) > 3 else rf"(?<![\w.]){re.escape(secret)}(?![\w.])"
        text = re.sub(pattern, "<value>", text)
    return text
