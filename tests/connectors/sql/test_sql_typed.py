"""A typed column takes one spelling of each of its values and nothing beyond its range: a NUMERIC or DOUBLE
column the canonical decimal, a TIMESTAMP the ISO 8601 moment, a DATE `YYYY-MM-DD`, an integer column an
integer it can hold. Any other spelling matches nothing, and nothing fails (SQLite, PostgreSQL, MariaDB)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.base import Subject
from tests.helpers import sql_connector

# Per engine: an integer of each width the engine has, and the row that holds each one's largest value.
INTEGERS = {
    "postgres": ("small SMALLINT, regular INTEGER, big BIGINT",
                 {"small": 32767, "regular": 2147483647, "big": 9223372036854775807}),
    "mariadb": ("tiny_u TINYINT UNSIGNED, medium MEDIUMINT, regular INT, regular_u INT UNSIGNED, "
                "big_u BIGINT UNSIGNED",
                {"tiny_u": 255, "medium": 8388607, "regular": 2147483647, "regular_u": 4294967295,
                 "big_u": 18446744073709551615}),
}


def matched(url: str, column: sa.types.TypeEngine[Any], stored: list[Any], typed: str) -> int:
    """Rows a `thing` table whose `value` column is of this type erases for the value typed, verify agreeing."""
    engine = sa.create_engine(url)
    table = sa.Table("thing", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("value", column))
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "value": value} for i, value in enumerate(stored)])
    engine.dispose()
    raw = {"name": "app", "kind": "sql", "url": url,
           "tables": [{"name": "thing", "where": {"value": "user_id"}, "action": "delete"}]}
    with sql_connector(raw, {"user_id": ()}) as sql:
        found = sql.verify(Subject({"user_id": (typed,)}))
        assert sql.erase(Subject({"user_id": (typed,)})).items_erased == found
        return found


@pytest.mark.parametrize(("typed", "rows"), [("1.5", 1), ("0", 1), ("-0.5", 1), ("01.5", 0), ("1.50", 0),
                                              ("+1.5", 0), ("1.5e0", 0), (".5", 0), ("-0", 0), ("0.0", 0)])
def test_a_decimal_column_takes_one_spelling_of_a_number(sql_url: str, typed: str, rows: int) -> None:
    """NUMERIC(30, 10): `1.5` takes the row of 1.5; `01.5`, `1.50`, `+1.5`, `1.5e0` or `-0` take nothing
    (before, any spelling of 1.5 or 0 took its row)."""
    stored = [Decimal("1.5"), Decimal(0), Decimal("-0.5"), Decimal(15), Decimal("0.15")]
    assert matched(sql_url, sa.Numeric(30, 10), stored, typed) == rows


@pytest.mark.parametrize(("typed", "rows"), [("0.3", 1), ("0.30000000000000001", 0), ("0.30", 0), ("3e-1", 0)])
def test_a_double_column_takes_the_shortest_spelling_of_its_double(sql_url: str, typed: str, rows: int) -> None:
    """DOUBLE: `0.3` takes the row of 0.3; `0.30000000000000001`, which is the same double, takes nothing."""
    assert matched(sql_url, sa.Double(), [0.3, 0.1], typed) == rows


@pytest.mark.parametrize(("typed", "rows"), [
    ("2024-01-01T00:00:00", 1), ("2024-01-01T00:00:01.500000", 1), ("2024-01-01 00:00:00", 0),
    ("2024-01-01T00:00", 0), ("2024-01-01", 0), ("2024-01-01T00:00:00Z", 0), ("2024-01-01T00:00:00+00:00", 0),
    ("2024-01-01T00:00:00.000000", 0), ("20240101T000000", 0)])
def test_a_timestamp_column_takes_only_an_iso_8601_moment(sql_url: str, typed: str, rows: int) -> None:
    """DATETIME / TIMESTAMP: only the moment as ISO 8601 writes it (`2024-01-01T00:00:00`) takes its row;
    `2024-01-01 00:00:00` or `2024-01-01T00:00` take nothing, and on SQLite nothing fails (a string was bound)."""
    stored = [datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 0, 1, 500000), datetime(2024, 1, 2)]
    column = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")  # MariaDB: microseconds kept
    assert matched(sql_url, column, stored, typed) == rows


@pytest.mark.parametrize(("typed", "rows"), [
    ("2024-01-01T00:00:00+00:00", 1), ("2024-01-01T01:00:00+01:00", 0), ("2024-01-01T00:00:00", 0),
    ("2024-01-01T00:00:00Z", 0)])
def test_a_zoned_timestamp_takes_only_utc_written_plus_zero(postgres_url: str, typed: str, rows: int) -> None:
    """TIMESTAMP WITH TIME ZONE (PostgreSQL): one spelling per instant, in UTC (`+00:00`); the same instant at
    another offset, or a moment without a zone (read in the session's zone), takes nothing."""
    stored = [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)]
    assert matched(postgres_url, sa.DateTime(timezone=True), stored, typed) == rows


@pytest.mark.parametrize(("typed", "rows"), [("2024-01-02", 1), ("20240102", 0), ("2024-1-2", 0),
                                              ("2024-01-02T00:00:00", 0), ("2024-W01-2", 0)])
def test_a_date_column_takes_only_yyyy_mm_dd(sql_url: str, typed: str, rows: int) -> None:
    """DATE: `2024-01-02` takes its row; `20240102`, `2024-1-2` or a moment of that day take nothing."""
    assert matched(sql_url, sa.Date(), [date(2024, 1, 2), date(2024, 1, 3)], typed) == rows


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_an_integer_beyond_its_column_matches_nothing(engine: str, request: pytest.FixtureRequest) -> None:
    """Each integer column takes its largest value, and one past it (or below an unsigned column's 0) matches
    nothing and fails nothing (PostgreSQL failed the system for good on an INTEGER asked for 2147483648)."""
    url = str(request.getfixturevalue(f"{engine}_url"))
    columns, largest = INTEGERS[engine]
    db = sa.create_engine(url)
    with db.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE numbers (id INTEGER PRIMARY KEY, {columns})")
        conn.execute(sa.text(f"INSERT INTO numbers VALUES (1, {', '.join(map(str, largest.values()))})"))
    db.dispose()
    for column, value in largest.items():
        raw = {"name": "app", "kind": "sql", "url": url,
               "tables": [{"name": "numbers", "where": {column: "user_id"}, "action": "delete"}]}
        below = ["-1"] if column.endswith("_u") else []
        with sql_connector(raw, {"user_id": ()}) as sql:
            assert [sql.verify(Subject({"user_id": (typed,)})) for typed in (str(value), str(value + 1), *below)] == [
                1, 0, *(0 for _ in below)], column
            assert sql.erase(Subject({"user_id": (str(value + 1), *below)})).items_erased == 0
