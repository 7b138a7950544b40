"""Which rows are a subject's: `column IN (values)` with each value as the column's own type (written as
that type writes it, and within the column's range), the stored text folded as the request's value was
(normalize.py), byte-exact on MySQL and MariaDB, in chunks (sets.py changes the matched rows).
Never LIKE: `_` and `%` are literals. Where an engine's case rules are not Python's, edges.py decides."""

from __future__ import annotations

import itertools
import math
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.normalize import TRIM_CHARS, Fold
from connectors.sql.config import SqlTable

CHUNK = 500  # values per IN list: well under every engine's limit on bound parameters


# As written canonically, so that one value has one spelling (a column cannot tell "042" from 42, nor "1.50"
# from 1.5): no sign but a minus, no leading zero, no trailing zero after the point, no exponent, no "-0".
INTEGER = re.compile(r"0|-?[1-9][0-9]{0,19}")
DECIMAL = re.compile(r"(?!-0\Z)-?(?:0|[1-9][0-9]{0,39})(?:\.[0-9]{0,39}[1-9])?")


# The width of each integer type (bits) on PostgreSQL, MySQL and MariaDB, the narrowest first; INTEGER is 32.
# SQLite's INTEGER is 64 bits whatever a column's declared type, and so is an unknown engine's here.
WIDTHS: tuple[tuple[type[sa.types.TypeEngine[Any]], int], ...] = (
    (mysql.TINYINT, 8), (sa.SmallInteger, 16), (mysql.MEDIUMINT, 24), (sa.BigInteger, 64))
SIZED = ("postgresql", "mysql")


Condition = sa.ColumnElement[bool]


def textual(column: sa.Column[Any], dialect: str) -> bool:
    """Whether the column holds text, which a fold applies to (an integer column is compared as a number;
    a SQLite column declared without a type may hold text)."""
    return isinstance(column.type, sa.String) or dialect == "sqlite" and isinstance(column.type, sa.types.NullType)


SQL_TRIM = "E'" + "".join(f"\\{ord(c):03o}" for c in TRIM_CHARS) + "'"  # PostgreSQL: the same characters


# MySQL and MariaDB: the same characters, themselves in the class (bound, so no escape is read twice);
# never [[:space:]] nor \s or \v, which take Unicode spaces there (U+00A0, U+3000, U+2028, U+0085)
MYSQL_TRIM = f"^[{TRIM_CHARS}]+|[{TRIM_CHARS}]+$"


def stripped(column: sa.ColumnElement[Any], fold: Fold, dialect: str, nfc: bool = True) -> sa.ColumnElement[Any]:
    """The stored value before the fold's case step: as utf8mb4 text (MySQL, MariaDB), NFC (where the engine
    can), trimmed if the fold trims."""
    expr = column
    if dialect == "mysql":  # lower() leaves binary strings as they are: compare as utf8mb4 text
        expr = sa.cast(expr, mysql.CHAR(charset="utf8mb4"))
    if nfc and dialect == "postgresql":
        expr = sa.func.normalize(expr, sa.literal_column("NFC"))
    elif dialect == "sqlite":  # SQLite's own lower() and upper() know ASCII alone: Python's, registered
        expr = sa.func.erasure_nfc(expr)
    if "trim" in fold:
        if dialect == "postgresql":
            expr = sa.func.btrim(expr, sa.literal_column(SQL_TRIM))
        elif dialect == "mysql":
            expr = sa.func.regexp_replace(expr, sa.literal(MYSQL_TRIM, sa.String), sa.literal_column("''"))
        elif dialect == "sqlite":
            expr = sa.func.erasure_trim(expr)
        else:
            expr = sa.func.trim(expr)
    return expr


def folded(column: sa.ColumnElement[Any], fold: Fold, dialect: str, nfc: bool = True) -> sa.ColumnElement[Any]:
    """The stored value as the request's was folded: NFC (where the engine can), then trim, lower or upper.
    On PostgreSQL `lower(btrim(normalize(col, NFC), ...))`: an expression index must be on the same text."""
    expr = stripped(column, fold, dialect, nfc)
    for step in fold:
        if step != "trim":
            expr = getattr(sa.func, f"erasure_{step}" if dialect == "sqlite" else step)(expr)
    return sa.type_coerce(expr, column.type)  # values are bound as the column's type, not a guessed one


def bindable(column: sa.Column[Any], values: Iterable[str], dialect: str) -> list[Any]:
    """The values a column may equal, as its type; one not written as that type writes it, or out of the
    column's range, is dropped (it matches nothing), so an engine never casts "42abc" into 42, nor "1.50"
    into 1.5. Other columns take the string."""
    convert = converter(column.type, dialect)
    return list(dict.fromkeys(v for v in map(convert, values) if v is not None))


def converter(kind: sa.types.TypeEngine[Any], dialect: str) -> Callable[[str], Any]:
    """How one value becomes the column's type, as bindable takes it (None: it is none of the column's)."""
    if not isinstance(kind, sa.Integer):
        return lambda value: _as_type(kind, value, dialect)
    low, high = integer_range(kind, dialect)  # once per column: a batch converts thousands of values

    def integer(value: str) -> int | None:
        number = int(value) if INTEGER.fullmatch(value) else None
        return number if number is not None and low <= number <= high else None

    return integer


def _as_type(kind: sa.types.TypeEngine[Any], value: str, dialect: str) -> Any:
    """The value as the column's number, date, time or UUID type (None if it is not one), else as is."""
    if isinstance(kind, sa.Integer):
        low, high = integer_range(kind, dialect)
        number = int(value) if INTEGER.fullmatch(value) else None
        return number if number is not None and low <= number <= high else None
    if isinstance(kind, sa.Numeric | sa.Float):  # (Float is no Numeric in SQLAlchemy 2.1) MariaDB reads "42abc" as 42
        return _as_number(kind, value, dialect)
    if isinstance(kind, sa.DateTime):
        return _as_moment(datetime.fromisoformat, value, kind.timezone)
    if isinstance(kind, sa.Date):
        return _as_moment(date.fromisoformat, value, False)
    if isinstance(kind, sa.Time):
        return _as_moment(time.fromisoformat, value, kind.timezone)
    if isinstance(kind, sa.Uuid):
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            return None
        return parsed if kind.as_uuid else str(parsed)
    return value


def integer_range(kind: sa.types.TypeEngine[Any], dialect: str) -> tuple[int, int]:
    """The lowest and highest integer the column holds (PostgreSQL would fail the whole statement on an int4
    compared with 2147483648)."""
    bits = next((bits for cls, bits in WIDTHS if isinstance(kind, cls)), 32) if dialect in SIZED else 64
    if getattr(kind, "unsigned", False):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _as_number(kind: sa.Numeric[Any] | sa.Float[Any], value: str, dialect: str) -> Decimal | float | None:
    """A decimal written canonically; for a column of doubles (a FLOAT, or any number in SQLite) only the
    shortest spelling of its double, so that one stored double has one spelling ("0.30000000000000001"
    would be 0.3)."""
    if not DECIMAL.fullmatch(value):
        return None
    if not isinstance(kind, sa.Float) and dialect != "sqlite":
        return Decimal(value)
    number = float(value)
    return number if math.isfinite(number) and _plain(Decimal(repr(number))) == value else None


def _plain(number: Decimal) -> str:
    """A decimal as written canonically: no exponent, no trailing zero after the point, "0" for zero."""
    text = format(number.normalize(), "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def _as_moment(parse: Callable[[str], Any], value: str, zoned: bool) -> Any:
    """A day, moment or time written as ISO 8601 writes it (Python's isoformat: "2024-01-01T00:00:00"); a
    column with a time zone takes only UTC written "+00:00", one without none: another spelling of that moment
    matches nothing, as "042" matches nothing in an integer column."""
    try:
        moment = parse(value)
    except ValueError:
        return None
    if moment.isoformat() != value:
        return None
    offset = moment.utcoffset() if isinstance(moment, datetime | time) else None
    if zoned:
        return moment if offset == timedelta(0) else None
    return moment if offset is None else None


def equal(expr: sa.ColumnElement[Any], values: list[Any], exact_text: bool = False,
          chunk_size: int = CHUNK) -> list[Condition]:
    """`expr IN (values)`, one condition per chunk; [] for no value. With exact_text (MySQL, MariaDB), text
    must also be equal byte for byte: their default collations ignore case and trailing spaces, so `a@b.c`
    would also take `A@B.C `."""
    found: list[Condition] = []
    for i in range(0, len(values), chunk_size):
        chunk = values[i : i + chunk_size]
        parts: list[Condition] = [expr.in_(_bind(expr, chunk, expanding=True))]
        if exact_text and all(isinstance(v, str) for v in chunk):
            parts.append(_same_bytes(expr, chunk))
        found.append(sa.and_(*parts))
    return found


def among(expr: sa.ColumnElement[Any], values: list[Any], exact_text: bool = False) -> Condition:
    """`expr` is one of the values (chunks ORed); false for none."""
    return sa.or_(sa.false(), *equal(expr, values, exact_text))


def combine(columns: list[list[Condition]]) -> list[Condition]:
    """Each column's chunks ANDed with every other column's; [] if a column has no value (an empty
    condition would match every row: match nothing instead)."""
    if not columns or any(not chunks for chunks in columns):
        return []
    return [sa.and_(*combo) for combo in itertools.product(*columns)]


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

