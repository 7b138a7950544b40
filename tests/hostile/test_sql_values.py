"""SQL systems with generated values and column types, on SQLite and (fewer examples) PostgreSQL and
MariaDB: erasing subject A never changes a row whose stored value belongs to anyone else (its text
folded as the identifier type folds, a number or a day as the column holds it), and takes every row of A's.
What this found in connectors/sql (an engine's own case and space rules, NUMERIC and DATETIME columns
taking other spellings, an int4 column failing on a larger integer) has a test of its own below, each
with the minimal example that showed it."""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import assume, example, given
from hypothesis import strategies as st

from connectors.base import Subject, as_integer
from connectors.normalize import Fold
from tests.helpers import (
    Examples,
    checksum,
    cleaned,
    date_texts,
    decimal_texts,
    folds,
    identifier,
    integer_texts,
    owner,
    pieces,
    plain_decimal,
    sql_connector,
    stored_values,
)

TABLES = itertools.count()
DAY = date(2024, 1, 1)


@dataclass(frozen=True)
class Kind:
    """A column type for the identifier: how to make it, what A is typed as, what is stored, whose it is."""

    name: str
    column: Callable[[], sa.types.TypeEngine[Any]]
    typed: Callable[[], st.SearchStrategy[str]]
    stored: Callable[[str], list[Any]]
    whose: Callable[[Any, Fold | None], str | None]


def _numbers(raw: str, limit: int) -> list[int]:
    number = as_integer(raw.strip())
    near = {0, 1, 4, 7, 42, 420, -42} | ({number, number + 1, number - 1, number * 10, -number} if number else set())
    return sorted(n for n in near if -limit <= n < limit)


def _decimals(raw: str) -> list[Decimal]:
    try:
        number = Decimal(raw.strip())
    except ArithmeticError:
        number = Decimal(0)
    near = {Decimal("1.5"), Decimal(0), Decimal(42), Decimal("0.5")}
    near |= {number, number + 1, number * 10} if number.is_finite() and abs(number) < 10**12 else set()
    return sorted(near)


def _days(raw: str) -> list[date]:
    return [DAY + timedelta(days=d) for d in range(-8, 9)]


def _moments(raw: str) -> list[datetime]:
    return [datetime.combine(day, datetime.min.time()) + timedelta(seconds=s) for day in _days(raw) for s in (0, 1)]


TEXT = [Kind(name, column, pieces, lambda raw: stored_values([raw]), lambda v, fold: owner(v, fold))
        for name, column in (("text", sa.Text), ("varchar", lambda: sa.String(255)),
                             ("unicode", lambda: sa.Unicode(255)))]
TYPED = [
    Kind("integer", sa.Integer, integer_texts, lambda raw: _numbers(raw, 2**31), lambda v, _: str(v)),
    Kind("bigint", sa.BigInteger, integer_texts, lambda raw: _numbers(raw, 2**63), lambda v, _: str(v)),
    Kind("date", sa.Date, date_texts, _days, lambda v, _: v.isoformat()),
]
NUMERIC = Kind("numeric", lambda: sa.Numeric(30, 10), decimal_texts, _decimals, lambda v, _: plain_decimal(v))
DATETIME = Kind("datetime", sa.DateTime, date_texts, _moments, lambda v, _: v.isoformat())


def engine_of(url: str) -> str:
    """sqlite, postgresql or mysql."""
    return sa.make_url(url).get_backend_name()


def erased_one(url: str, kind: Kind, fold: Fold, exact: bool, raw: str, others: list[str]) -> None:
    """Seed a fresh table with A's value, others' values and their neighbours, erase A, and check: rows of
    anyone else unchanged, rows of A's gone."""
    value = cleaned(identifier("ident", fold=fold), raw)
    assume(value is not None)
    assert value is not None
    seeded = list(dict.fromkeys(v for r in (raw, *others) for v in kind.stored(r)))
    name = f"hostile_{next(TABLES)}"
    engine = sa.create_engine(url)
    table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("ident", kind.column()), sa.Column("note", sa.String(20)), mysql_charset="utf8mb4")
    try:
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"id": i, "ident": v, "note": f"row {i}"} for i, v in enumerate(seeded)])
            before = {row.id: (row.ident, checksum(*row)) for row in conn.execute(sa.select(table))}
        entry = {"name": name, "where": {"ident": "ident"}, "action": "delete"} | ({"match": "exact"} if exact else {})
        with sql_connector({"name": "app", "kind": "sql", "url": url, "tables": [entry]}, {"ident": fold}) as system:
            system.erase(Subject({"ident": (value,)}))
        with engine.connect() as conn:
            after = {row.id: checksum(*row) for row in conn.execute(sa.select(table))}
        compare = None if exact else fold
        widened = [stored for i, (stored, digest) in before.items()
                   if kind.whose(stored, compare) != value and after.get(i) != digest]
        assert widened == [], f"erasing {value!r} changed the rows of {widened!r}"
        # MariaDB has no NFC: a stored text NFC would change is not A's there (docs/matching.md)
        composes = engine_of(url) != "mysql"
        missed = [stored for i, (stored, _) in before.items() if kind.whose(stored, compare) == value and i in after
                  and (composes or not isinstance(stored, str) or unicodedata.is_normalized("NFC", stored))]
        assert missed == [], f"erasing {value!r} left {missed!r}"
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


@pytest.fixture(params=["postgres", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each SQL server engine (SQLite folds by Python's own rules)."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def sized(examples: Examples, url: str, n: int) -> Any:
    """n examples on SQLite, a quarter of them on a server."""
    return examples(n if engine_of(url) == "sqlite" else max(5, n // 4))


def test_text_columns_never_take_another_persons_rows(sql_url: str, examples: Examples) -> None:
    """TEXT, VARCHAR and Unicode columns, any fold, folded or exact: erasing A takes every row folding to A's
    value and no other."""

    @sized(examples, sql_url, 60)
    @given(kind=st.sampled_from(TEXT), fold=folds(), exact=st.booleans(), data=st.data())
    def check(kind: Kind, fold: Fold, exact: bool, data: Any) -> None:
        raw = data.draw(pieces(), "raw")
        others = data.draw(st.lists(pieces(), max_size=2), "others")
        erased_one(sql_url, kind, fold, exact, raw, others)

    check()


def test_typed_columns_take_only_a_plainly_written_value(sql_url: str, examples: Examples) -> None:
    """INTEGER, BIGINT and DATE columns: A typed "042", " 42", "4.2e1", "2024-1-1" or "epoch" takes nothing;
    A written plainly takes the rows holding it; a neighbour's row is never touched."""

    @sized(examples, sql_url, 60)
    @given(kind=st.sampled_from(TYPED), fold=folds(), data=st.data())
    def check(kind: Kind, fold: Fold, data: Any) -> None:
        raw = data.draw(kind.typed(), "raw")
        erased_one(sql_url, kind, fold, False, raw, [data.draw(kind.typed(), "other")])

    check()


def outside_int4(raw: str) -> bool:
    """Whether a plainly written integer lies outside PostgreSQL's INTEGER (int4)."""
    number = as_integer(raw)
    return number is not None and not -(2**31) <= number < 2**31


def test_an_integer_beyond_the_column_matches_nothing(postgres_url: str, examples: Examples) -> None:
    """A plainly written integer an INTEGER column cannot hold matches nothing there (and fails nothing)."""

    @sized(examples, postgres_url, 20)
    @given(raw=integer_texts().filter(outside_int4), fold=folds())
    @example(raw="2147483648", fold=())
    def check(raw: str, fold: Fold) -> None:
        erased_one(postgres_url, TYPED[0], fold, False, raw, ["42"])

    check()


def test_engine_case_rules_never_take_another_persons_rows(server_url: str, examples: Examples) -> None:
    """With lower, a stored 'İ' or a word ending in 'Σ' belongs to whoever Python folds it to, on every engine."""
    sql_url = server_url

    @sized(examples, sql_url, 40)
    @given(raw=st.sampled_from(("i", "οδοσ", "iSTANBUL", "x")), fold=st.just(("lower",)))
    @example(raw="i", fold=("lower",))
    @example(raw="οδοσ", fold=("lower",))
    def check(raw: str, fold: Fold) -> None:
        erased_one(sql_url, TEXT[1], fold, False, raw, ["İ", "ΟΔΟΣ", "İSTANBUL"])

    check()


def test_trim_takes_only_ascii_whitespace(mariadb_url: str, examples: Examples) -> None:
    """With trim, a stored value padded by a no-break or ideographic space is another person's (MariaDB)."""
    sql_url = mariadb_url

    @sized(examples, sql_url, 40)
    @given(raw=pieces().filter(lambda r: r.strip() == r and r.isascii()), fold=st.just(("trim",)))
    @example(raw="abc", fold=("trim",))
    def check(raw: str, fold: Fold) -> None:
        erased_one(sql_url, TEXT[1], fold, False, raw, [])

    check()


def test_numeric_columns_take_only_a_plainly_written_value(sql_url: str, examples: Examples) -> None:
    """NUMERIC(30, 10): A typed otherwise than plainly ('01.5', '1.50', '-0') takes nothing, as '042' in INTEGER."""

    @sized(examples, sql_url, 40)
    @given(raw=decimal_texts(), fold=folds())
    @example(raw="01.5", fold=())
    def check(raw: str, fold: Fold) -> None:
        erased_one(sql_url, NUMERIC, fold, False, raw, [])

    check()


def test_datetime_columns_take_only_an_iso_value(sql_url: str, examples: Examples) -> None:
    """DATETIME / TIMESTAMP: only A written as ISO 8601 (isoformat) takes a row; other spellings take nothing."""

    @sized(examples, sql_url, 40)
    @given(raw=date_texts(), fold=folds())
    @example(raw="2024-01-01T00:00:00", fold=())
    @example(raw="2024-01-01 00:00:00", fold=())
    def check(raw: str, fold: Fold) -> None:
        erased_one(sql_url, DATETIME, fold, False, raw, [])

    check()
