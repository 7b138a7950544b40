"""Which rows are a subject's: `column IN (values)` with each value as the column's own type, the
stored text folded as the request's value was (normalize.py), byte-exact on MySQL and MariaDB, in
chunks; and the DELETE or UPDATE of the matched rows. Never LIKE: `_` and `%` are literals."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.base import (
    as_integer,
)
from connectors.normalize import TRIM_CHARS, Fold
from connectors.sql.config import SqlTable

PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,40})?")


CHUNK = 500  # values per IN list: well under every engine's limit on bound parameters


BIGINT = 2**63  # no integer column holds a value outside [-BIGINT, BIGINT)


Condition = sa.ColumnElement[bool]


def textual(column: sa.Column[Any], dialect: str) -> bool:
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


def bindable(column: sa.Column[Any], values: Iterable[str]) -> list[Any]:
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


def conditions(pairs: list[tuple[sa.ColumnElement[Any], list[Any]]], exact_text: bool = False) -> list[Condition]:
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


def pending(table: sa.Table, entry: SqlTable) -> list[Condition]:
    """For anonymize (and the rows delete_unreferenced keeps), the row still differs from its target
    values; nothing more for delete. (A `set` that masks is judged row by row: rows.py.)"""
    if entry.action == "delete":
        return []
    return [sa.or_(*(table.c[c].is_distinct_from(_bind(table.c[c], value)) for c, value in entry.literals))]


def _bind(column: sa.ColumnElement[Any], value: Any, expanding: bool = False) -> sa.BindParameter[Any]:
    """A bound parameter of the column's own type, not one guessed from the Python value."""
    return sa.bindparam(None, value, type_=column.type, expanding=expanding)


def statement(table: sa.Table, entry: SqlTable, match: Condition) -> sa.Executable:
    """The DELETE or UPDATE of the matched rows (an UPDATE, for anonymize and the rows delete_unreferenced
    keeps, sets the literal values and skips rows already anonymized)."""
    if entry.action == "delete":
        return sa.delete(table).where(match)
    values = {table.c[column]: value for column, value in entry.literals}
    return sa.update(table).where(match, *pending(table, entry)).values(values)
