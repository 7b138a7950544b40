"""The sql connector matches a person however their identifier is stored: the stored side is folded
as the request's value was (NFC, trim, lower or upper), on SQLite, PostgreSQL and MariaDB, and a fold
never widens a match. The tables are shaped like MySQL's Sakila sample database, whose customers'
emails are stored upper case (MARY.SMITH@sakilacustomer.org)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import Subject
from connectors.normalize import Fold, fold_text
from connectors.sql.config import Lookup
from connectors.sql.connector import SqlConnector
from tests.helpers import sql_connector

FOLDS: dict[str, Fold] = {"email": ("lower",), "trimmed": ("trim", "lower"), "code": ("upper",), "customer_id": ()}
CUSTOMERS = [  # (customer_id, email) as Sakila stores them, and neighbours a widened match would take
    (1, "MARY.SMITH@sakilacustomer.org"),
    (2, "PATRICIA.JOHNSON@sakilacustomer.org"),
    (3, "mary.smithe@sakilacustomer.org"),
    (4, "mary_smith@sakilacustomer.org"),
    (5, "MARY%SMITH@sakilacustomer.org"),
    (6, "Mary.Smith@sakilacustomer.org.evil"),
    (7, "  LINDA.WILLIAMS@sakilacustomer.org\t"),
    (8, "BARBARA. JONES@sakilacustomer.org"),
    (9, "E\u0301MILE.DURAND@sakilacustomer.org"),  # É decomposed: E and a combining acute accent
]
PAYMENTS = [(1, 1, "2.99"), (2, 1, "0.99"), (3, 2, "5.99"), (4, 3, "0.99"), (5, 4, "9.99"), (6, 7, "4.99"),
            (7, 9, "1.99")]
RENTALS = [(1, 1), (2, 1), (3, 1), (4, 2), (5, 6), (6, 7), (7, 9)]
SAKILA: list[dict[str, Any]] = [
    {"name": "customer", "where": {"email": "email"}, "action": "delete"},
    {"name": "payment", "where": {"customer_id": "customer.customer_id"}, "action": "delete"},
    {"name": "rental", "where": {"customer_id": "customer.customer_id"}, "action": "delete"},
]


def connector(url: str, tables: list[dict[str, Any]] = SAKILA) -> SqlConnector:
    """A connector for the `sakila` system, its identifier types folded as FOLDS says."""
    return sql_connector({"name": "sakila", "kind": "sql", "url": url, "tables": tables}, FOLDS)


def typed(id_type: str, *values: str) -> Subject:
    """A subject whose values went through intake's fold for their type."""
    return Subject({id_type: tuple(sorted({fold_text(v, FOLDS[id_type]) for v in values}))})


@pytest.fixture
def sakila(sql_url: str) -> Iterator[sa.Engine]:
    """customer, payment and rental, with foreign keys, emails in the cases Sakila and its neighbours use."""
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    customer = sa.Table("customer", metadata,
                        sa.Column("customer_id", sa.Integer, primary_key=True, autoincrement=False),
                        sa.Column("email", sa.String(50)), mysql_engine="InnoDB")
    payment = sa.Table("payment", metadata,
                       sa.Column("payment_id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("customer_id", sa.Integer, sa.ForeignKey("customer.customer_id")),
                       sa.Column("amount", sa.String(10)), mysql_engine="InnoDB")
    rental = sa.Table("rental", metadata,
                      sa.Column("rental_id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("customer_id", sa.Integer, sa.ForeignKey("customer.customer_id")),
                      mysql_engine="InnoDB")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(customer.insert(), [{"customer_id": i, "email": e} for i, e in CUSTOMERS])
        conn.execute(payment.insert(), [{"payment_id": i, "customer_id": c, "amount": a} for i, c, a in PAYMENTS])
        conn.execute(rental.insert(), [{"rental_id": i, "customer_id": c} for i, c in RENTALS])
    yield engine
    engine.dispose()


def dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the three tables, by key."""
    keys = {"customer": "customer_id", "payment": "payment_id", "rental": "rental_id"}
    with engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY {k}"))]  # noqa: S608
                for t, k in keys.items()}


def without(before: dict[str, list[tuple[Any, ...]]], customers: set[int]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows that must remain once those customers are erased."""
    return {
        "customer": [r for r in before["customer"] if r[0] not in customers],
        "payment": [r for r in before["payment"] if r[1] not in customers],
        "rental": [r for r in before["rental"] if r[1] not in customers],
    }


@pytest.mark.parametrize("typed_as", ["mary.smith@sakilacustomer.org", "MARY.SMITH@sakilacustomer.org",
                                      "Mary.Smith@SakilaCustomer.org"])
def test_an_email_typed_in_any_case_erases_the_upper_case_row(sakila: sa.Engine, sql_url: str, typed_as: str) -> None:
    """Mary's customer row, 2 payments and 3 rentals go whatever case her email is typed in; nothing else."""
    before = dump(sakila)
    with connector(sql_url) as sql:
        outcome = sql.erase(typed("email", typed_as))
        assert sql.verify(typed("email", typed_as)) == 0
    assert outcome.items_erased == 1 + 2 + 3
    assert dump(sakila) == without(before, {1})


def test_a_fold_never_widens_to_a_neighbour(sakila: sa.Engine, sql_url: str) -> None:
    """`Mary.Smith@x` takes `MARY.SMITH@x` alone: never `mary.smithe@x`, `mary_smith@x`, `MARY%SMITH@x`
    or a longer domain (`_` and `%` are literals, and equality is never likeness)."""
    with connector(sql_url) as sql:
        assert sql.verify(typed("email", "Mary.Smith@sakilacustomer.org")) == 1 + 2 + 3
        assert sql.verify(typed("email", "mary_smith@sakilacustomer.org")) == 1 + 1  # customer 4 alone
        assert sql.verify(typed("email", "mary%smith@sakilacustomer.org")) == 1  # customer 5 alone
        assert sql.verify(typed("email", "mary.smith@sakilacustomer")) == 0
        assert sql.verify(typed("email", "%@sakilacustomer.org")) == 0
        assert sql.verify(typed("email", "_ary.smith@sakilacustomer.org")) == 0


def test_trim_removes_outer_whitespace_only(sakila: sa.Engine, sql_url: str) -> None:
    """With trim, a stored `  LINDA...\\t` is Linda's; inner spaces stay: `BARBARA.JONES` is not `BARBARA. JONES`."""
    trimmed = [{**SAKILA[0], "where": {"email": "trimmed"}}, *SAKILA[1:]]
    before = dump(sakila)
    with connector(sql_url, trimmed) as sql:
        assert sql.verify(typed("trimmed", "barbara.jones@sakilacustomer.org")) == 0
        assert sql.erase(typed("trimmed", " Linda.Williams@sakilacustomer.org ")).items_erased == 1 + 1 + 1
    assert dump(sakila) == without(before, {7})


def test_without_trim_outer_whitespace_is_kept_apart(sakila: sa.Engine, sql_url: str) -> None:
    """A type folded by lower alone does not take a stored value with outer whitespace."""
    with connector(sql_url) as sql:
        assert sql.verify(typed("email", "linda.williams@sakilacustomer.org")) == 0


def test_an_integer_column_is_untouched_by_case_rules(sakila: sa.Engine, sql_url: str) -> None:
    """A type folded upper still matches an integer column by number: 1 takes customer 1 alone, never 10."""
    tables = [{**SAKILA[1], "where": {"customer_id": "code"}}]
    with connector(sql_url, tables) as sql:
        assert sql.verify(typed("code", "1")) == 2
        assert sql.verify(typed("code", "01")) == 0


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_decomposed_stored_accent_is_the_composed_one(engine: str, request: pytest.FixtureRequest) -> None:
    """NFC on both sides: a stored `E` + combining acute is the `É` a person types (SQLite, PostgreSQL)."""
    url = str(request.getfixturevalue(f"{engine}_url"))
    engine_ = sa.create_engine(url)
    with engine_.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customer (customer_id INTEGER PRIMARY KEY, email VARCHAR(50))")
        conn.execute(sa.text("INSERT INTO customer VALUES (9, :e), (10, :f)"),
                     {"e": CUSTOMERS[8][1], "f": "EMILE.DURAND@sakilacustomer.org"})
    with connector(url, SAKILA[:1]) as sql:
        assert sql.erase(typed("email", "\u00e9mile.durand@sakilacustomer.org")).items_erased == 1
    with engine_.connect() as conn:
        assert [tuple(r) for r in conn.exec_driver_sql("SELECT customer_id FROM customer")] == [(10,)]
    engine_.dispose()


def test_match_exact_compares_the_stored_value_as_it_is(sakila: sa.Engine, sql_url: str) -> None:
    """`match = "exact"` says the column is stored folded: an upper-case row is then not taken."""
    exact = [{**SAKILA[0], "match": "exact"}]
    with connector(sql_url, exact) as sql:
        assert sql.verify(typed("email", "MARY.SMITH@sakilacustomer.org")) == 0
        assert sql.verify(typed("email", "mary.smithe@sakilacustomer.org")) == 1


def test_a_lookup_resolves_an_upper_case_stored_email(sakila: sa.Engine, sql_url: str) -> None:
    """A resolver's lookup folds the stored email: a typed `mary.smith@...` finds customer 1, only her."""
    with connector(sql_url) as sql:
        found = sql.resolve(Lookup("customer", "email", "customer_id", ("lower",)), "email",
                            ["mary.smith@sakilacustomer.org"])
        assert found == ["1"]
        assert sql.resolve(Lookup("customer", "email", "customer_id", ("lower",), exact=True), "email",
                           ["mary.smith@sakilacustomer.org"]) == []


def test_a_query_that_folds_itself_resolves_an_upper_case_stored_email(sakila: sa.Engine, sql_url: str) -> None:
    """A resolver's own query with lower() on the stored side finds the upper-case row."""
    with connector(sql_url) as sql:
        query = "SELECT customer_id FROM customer WHERE lower(email) = :email"
        assert sql.resolve(query, "email", ["mary.smith@sakilacustomer.org"]) == ["1"]
