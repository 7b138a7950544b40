"""The sql connector: deletes or anonymizes a subject's rows in any SQLAlchemy database,
every listed table in one transaction, in an order that satisfies foreign keys (children first,
so a delete_unreferenced table is judged once the rows that referred to it are gone); many
subjects at once with statements over the group (sets.py), one subject as a group of one."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from connectors.base import (
    Checked,
    Connector,
    Journal,
    Outcome,
    Part,
    Patterns,
    Preview,
    Subject,
    every_one,
    retry_blips,
)
from connectors.errors import ConnectorError, PermanentError, TransientError, one_line
from connectors.sql import edges, preview, probe, rows, sets
from connectors.sql.config import Lookup, Reference, SqlConfig, SqlTable, reference_order
from connectors.sql.engine import create_engine
from connectors.sql.masks import Masker, unfit
from connectors.sql.match import CHUNK, Condition, bindable, combine, equal, folded, pending, stripped, textual

JOURNAL_KEY = "rows"  # what erase_many tells the journal its changes as (one transaction at a time)
TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)


@dataclass(frozen=True)
class Schema:
    """The listed tables as reflected, the entry order that applies actions children first, and the
    foreign keys that point at each delete_unreferenced table."""

    tables: Mapping[str, sa.Table]
    apply_order: tuple[int, ...]
    referrers: Mapping[str, tuple[rows.Referrer, ...]]


class SqlConnector(Connector):
    """Deletes or anonymizes a subject's rows in one SQL database, all or nothing."""

    kind = "sql"
    batches = True
    batch_waits = False  # a pass is a few statements: it takes the requests waiting now, none waits for more
    config_class = SqlConfig
    config: SqlConfig

    def __init__(self, config: SqlConfig) -> None:
        super().__init__(config)
        self._engine: sa.Engine | None = None
        self._schema: Schema | None = None
        self._nfc: bool | None = None
        self._pseudonym_key: Callable[[], bytes] | None = None

    def use_pseudonym_key(self, key: Callable[[], bytes]) -> None:
        """Keep the worker's pseudonym key, which `{ hash = true }` and `{ random = true }` make masks under."""
        self._pseudonym_key = key

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
        return every_one(sets.erase(self, [subject]))[0]

    @retry_blips
    def erase_many(self, subjects: Sequence[Subject],
                   journal: Journal | None = None) -> Sequence[Outcome | ConnectorError]:
        """erase() for many subjects with statements that take them all at once, in one transaction, each
        subject with its own counts; a subject whose rows fail the batch gets its error in its place (sets.py).
        `journal` hears each transaction's rows per subject before it commits (as JOURNAL_KEY), so that a
        worker killed between the commit and the store's record loses no count."""
        if journal is None:
            return sets.erase(self, list(subjects))
        told = journal

        def tell(first: int, rows: list[int]) -> None:
            told(JOURNAL_KEY, [0] * first + rows + [0] * (len(subjects) - first - len(rows)))

        return sets.erase(self, list(subjects), tell)

    def _masker(self) -> Masker:
        """The masks' maker, under the key the worker gave; PermanentError if it gave none."""
        if self._pseudonym_key is None:
            raise PermanentError(f"sql system {self.config.name!r}: no pseudonym key to mask with "
                                 "(the worker gives its connectors one: Connector.use_pseudonym_key)")
        return Masker(self._pseudonym_key())

    @retry_blips
    def verify(self, subject: Subject) -> int:
        """Rows still matching: any in a delete table, those not yet anonymized in the others
        (a table under a retention keeps its rows: not counted)."""
        return sets.verify(self, [subject])[0]

    @retry_blips
    def verify_many(self, subjects: Sequence[Subject]) -> list[int]:
        """verify() for many subjects with statements that take them all at once (sets.py)."""
        return sets.verify(self, list(subjects))

    def _left(self, conn: sa.Connection, table: sa.Table, entry: SqlTable, matches: list[Condition],
              subject: Subject) -> int:
        """The subject's rows in one table that its action has yet to delete or anonymize."""
        count = sa.select(sa.func.count()).select_from(table)
        with self._errors(subject.all_values(), entry.name):
            if entry.masks:
                masker = self._masker()
                return sum(rows.left(conn, table, entry, match, masker) for match in matches)
            return sum(conn.execute(count.where(match, *pending(table, entry))).scalar_one() for match in matches)

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
            for match in self._matching(conn, table.c[lookup.column], lookup, values):
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
            for column, mask in entry.masks:
                problem = unfit(mask, tables[entry.name].c[column], conn.dialect.name)
                if problem:
                    where = f"sql system {self.config.name!r}: table {entry.name!r} column {column!r}"
                    raise PermanentError(f"{where}: {problem}")
        keyless = rows.primary_key_missing(tables, entries)
        if keyless:
            raise PermanentError(f"sql system {self.config.name!r}: table {keyless!r} has no primary key "
                                 "(a mask or delete_unreferenced changes rows one by one, by their key)")
        unreferenced = [tables[e.name] for e in entries if e.action == "delete_unreferenced"]
        rank = {table: i for i, table in enumerate(reversed(metadata.sorted_tables))}
        order = sorted(range(len(entries)), key=lambda i: rank[tables[entries[i].name]])
        self._schema = Schema(tables, tuple(order), rows.referrers(conn, unreferenced) if unreferenced else {})
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
            matches[i] = combine([
                self._matching(conn, table.c[column], ref, subject.values(ref.identifier))
                if ref.identifier
                else equal(table.c[column], list(found[(ref.table, ref.column)]), conn.dialect.name == "mysql")
                for column, ref in entry.where
            ])
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

    def _matching(self, conn: sa.Connection, column: sa.Column[Any], ref: Reference | Lookup,
                  values: Iterable[str], chunk_size: int = CHUNK) -> list[Condition]:
        """The column equals one of a request's values (as its type, folded as they were): one condition per
        chunk. Where the engine's case step is not Python's, the rows it would fold otherwise are decided
        by Python's fold (edges.py)."""
        dialect, typed = conn.dialect.name, bindable(column, values, conn.dialect.name)
        compared, learned = self._edges(conn, column, ref)
        if learned is None:
            return equal(compared, typed, dialect == "mysql", chunk_size)
        nfc = self._unicode(conn)
        return edges.decided(conn, column, ref.fold, compared, stripped(column, ref.fold, dialect, nfc), typed, learned,
                             composed=dialect == "postgresql" and nfc)

    def _edges(self, conn: sa.Connection, column: sa.Column[Any],
               ref: Reference | Lookup) -> tuple[sa.ColumnElement[Any], edges.Edges | None]:
        """The column as a request's value is compared with it, and where the engine's case step is not
        Python's, what it does otherwise (None: the engine's comparison is all)."""
        dialect, compared = conn.dialect.name, self._compared(conn, column, ref)
        case = [step for step in ref.fold if step != "trim"]
        if compared is column or not case or dialect not in ("postgresql", "mysql"):
            return compared, None
        collation = getattr(column.type, "collation", None) if dialect == "postgresql" else None
        learned = edges.learn(conn, case[0], collation, self._unicode(conn))
        if learned is None:
            raise PermanentError(f"sql system {self.config.name!r}: the database's {case[0]}() does not fold "
                                 "one character at a time, so it cannot be compared with Python's")
        return compared, learned

    def _compared(self, conn: sa.Connection, column: sa.Column[Any], ref: Reference | Lookup) -> sa.ColumnElement[Any]:
        """The column as a request's value is compared with it: folded as the value was, if it holds text."""
        if ref.exact or not textual(column, conn.dialect.name):
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

    def preview(self, subject: Subject) -> Preview:
        """Rows per table that erase() would change now, counted read-only by its own match (preview.py)."""
        return retry_blips(preview.look)(self, subject)

    def export(self, subject: Subject, *, contents: bool = False) -> Iterator[Part]:
        """The subject's rows, table by table, read in a read-only transaction (preview.py)."""
        return preview.read(self, subject)

    def check(self, patterns: Patterns | None = None) -> Checked:
        """Tables, columns, foreign keys and privileges as the config needs them, read-only (probe.py)."""
        return probe.check(self, patterns)


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
