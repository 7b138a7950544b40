"""Whose rows a set-based statement takes. Each `where` column of a batch is matched against every subject's
values at once (`IN` over their union, in chunks, as match.py and edges.py match one subject's); the key the
engine compared a row by is read back with the row (RETURNING, or a keyed select first), and the row is
given to the subjects whose own values hold every one of its keys, in the batch's order.

The keys are compared in Python only to tell owners apart, never to widen: a row is taken only if the engine
matched it. Python's equality of a read-back key and a bound value is never looser than the engine's (int,
Decimal, date, UUID; text byte for byte, as the engine compares it here: MySQL and MariaDB bytes, a fold in
the column's type); where it is stricter (a CHAR(n) padded by PostgreSQL, a citext column), a matched row
is owned by no subject and the batch is done again subject by subject (Unattributed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from connectors.base import Subject
from connectors.normalize import fold_text
from connectors.sql import edges
from connectors.sql.config import Lookup, Reference, SqlTable
from connectors.sql.match import CHUNK, Condition, combine, converter, equal, stripped

SET_CHUNK = 1000  # values per IN list of a batch: one scan of an unindexed table per thousand subjects
# (SQLite keeps match.py's: a build may allow only 999 bound parameters per statement)
Found = Mapping[tuple[str, str], Mapping[Any, None]]  # a subject's values of referenced `table.column`s


class Sql(Protocol):
    """The sql connector as read here (connector.py imports this module's users, never the reverse)."""

    def _matching(self, conn: sa.Connection, column: sa.Column[Any], ref: Reference | Lookup,
                  values: Sequence[str], chunk_size: int = ...) -> list[Condition]: ...

    def _edges(self, conn: sa.Connection, column: sa.Column[Any],
               ref: Reference | Lookup) -> tuple[sa.ColumnElement[Any], edges.Edges | None]: ...

    def _unicode(self, conn: sa.Connection) -> bool: ...


class Unattributed(Exception):  # noqa: N818 - a signal, caught in sets.py, never an error a user sees
    """A matched row that no subject's values explain: the engine compares otherwise than Python here."""


@dataclass(frozen=True)
class Key:
    """One `where` column as a batch matches it: the conditions over every subject's values, the expressions
    that read back a row's key, how the key is made of them, and each subject's keys."""

    conditions: list[Condition]
    exprs: tuple[sa.ColumnElement[Any], ...]
    read: Callable[[Sequence[Any]], Any]
    wanted: list[frozenset[Any]]


@dataclass
class Owners:
    """A table entry's `where` over a batch: its conditions, and the subjects that own a row."""

    keys: list[Key]
    _by_key: list[dict[Any, list[int]]] = field(init=False)

    def __post_init__(self) -> None:
        self._by_key = []
        for key in self.keys:
            index: dict[Any, list[int]] = {}
            for s, wanted in enumerate(key.wanted):
                for value in wanted:
                    index.setdefault(value, []).append(s)
            self._by_key.append(index)

    @property
    def exprs(self) -> list[sa.ColumnElement[Any]]:
        """What a statement reads back, first, for `of` to tell a row's owners."""
        return [expr for key in self.keys for expr in key.exprs]

    @property
    def width(self) -> int:
        """How many of a row's values are the keys' (what follows is the caller's)."""
        return len(self.exprs)

    def conditions(self) -> list[Condition]:
        """Every column equals some subject's value (chunks; ANDed columns may pair one subject's value with
        another's: `of` tells those rows, which are nobody's); [] when no subject has a value."""
        return combine([key.conditions for key in self.keys])

    def of(self, row: Sequence[Any]) -> list[int]:
        """The subjects (by position, in order) that own the row: each of its keys is one of theirs."""
        owned: list[int] | None = None
        at = 0
        for key, index in zip(self.keys, self._by_key, strict=True):
            value = key.read(row[at:] if at else row)  # a key reads its own first values
            at += len(key.exprs)
            try:
                found = index.get(value)
            except TypeError:  # an unhashable value read back: Python cannot tell
                raise Unattributed from None
            if found is None:
                raise Unattributed
            owned = found if owned is None else [s for s in owned if s in set(found)]
        return owned or []


def owners(sql: Sql, conn: sa.Connection, table: sa.Table, entry: SqlTable, subjects: Sequence[Subject],
           found: Sequence[Found]) -> Owners:
    """The entry's `where` matched over the batch, from the subjects' values and the references they found."""
    keys = []
    for column_name, ref in entry.where:
        column = table.c[column_name]
        if ref.identifier:
            keys.append(_identified(sql, conn, column, ref, subjects))
        else:
            per = [list(f[(ref.table, ref.column)]) for f in found]
            union = list(dict.fromkeys(value for values in per for value in values))
            conditions = equal(column, union, conn.dialect.name == "mysql", _chunk(conn))
            keys.append(Key(conditions, (column,), _first, [frozenset(values) for values in per]))
    return Owners(keys)


def _identified(sql: Sql, conn: sa.Connection, column: sa.Column[Any], ref: Reference,
                subjects: Sequence[Subject]) -> Key:
    """A column compared with an identifier type's values: each subject's own, as the column's type."""
    dialect = conn.dialect.name
    union = list(dict.fromkeys(value for s in subjects for value in s.values(ref.identifier)))
    typed = dict(zip(union, map(converter(column.type, dialect), union), strict=True))  # as bindable has them
    wanted = [frozenset(typed[v] for v in s.values(ref.identifier) if typed[v] is not None) for s in subjects]
    conditions = sql._matching(conn, column, ref, union, _chunk(conn))
    compared, learned = sql._edges(conn, column, ref)
    if learned is None:
        return Key(conditions, (compared,), _first, wanted)
    nfc = sql._unicode(conn)
    edgy = learned.found_in(stripped(column, ref.fold, dialect, nfc), dialect,
                            column if dialect == "postgresql" and nfc else None)
    # a row with an edge character is the subject's whose value Python's fold of its stored text is (edges.py)
    return Key(conditions, (compared, edges.stored_text(column, dialect), edgy),
               lambda row: _python_fold(row[1], ref.fold) if row[2] else row[0], wanted)


def _chunk(conn: sa.Connection) -> int:
    """Values per IN list of a batch on this engine."""
    return CHUNK if conn.dialect.name == "sqlite" else SET_CHUNK


def _first(row: Sequence[Any]) -> Any:
    """The key is the value read back."""
    return row[0]


def _python_fold(stored: Any, fold: tuple[str, ...]) -> str | None:
    """The stored text (bytes on MySQL and MariaDB) folded by Python."""
    text = stored.decode() if isinstance(stored, bytes) else stored
    return fold_text(text, fold) if isinstance(text, str) else None
