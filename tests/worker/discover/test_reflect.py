"""How discover reads a database: in a read-only transaction that refuses writes on every engine,
never creating a SQLite file, at most 1,000 rows a table, declared foreign keys followed (composite
ones and self-references not), and links inferred from column names where none is declared."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from tests.helpers import ListDispatch, drain
from worker.config import load
from worker.discover.draft import render
from worker.discover.identifiers import identifier_types
from worker.discover.reflect import parse_url, read_only, reflect
from worker.discover.run import discover
from worker.engine import intake
from worker.errors import ErasureError
from worker.runtime import Runtime
from worker.surfaces import views

SHOP = [  # declared foreign keys whose column names say nothing of their targets
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, referred_by INTEGER REFERENCES users(id))",
    "CREATE TABLE places (id INTEGER PRIMARY KEY, street TEXT NOT NULL, postcode TEXT, phone TEXT NOT NULL UNIQUE)",
    "CREATE TABLE purchases (id INTEGER PRIMARY KEY, buyer INTEGER NOT NULL REFERENCES users(id), "
    "ship_to INTEGER REFERENCES places(id))",
    "CREATE TABLE lines (purchase INTEGER REFERENCES purchases(id), n INTEGER, sku TEXT, PRIMARY KEY (purchase, n))",
    "CREATE TABLE parcels (purchase INTEGER, n INTEGER, tracking TEXT, "
    "FOREIGN KEY (purchase, n) REFERENCES lines(purchase, n))",
    "INSERT INTO users VALUES (1, 'ann@example.org', 'Ann A', NULL), (2, 'bob@example.org', 'Bob B', 1)",
    "INSERT INTO places VALUES (10, 'High Street 1', 'AB1', '+4400001'), (20, 'Low Road 2', 'CD2', '+4400002')",
    "INSERT INTO purchases VALUES (100, 1, 10), (200, 2, 20)",
    "INSERT INTO lines VALUES (100, 1, 'sku-1'), (200, 1, 'sku-2')",
]


def make(url: str, statements: list[str]) -> str:
    """Run the statements on the database at url; the url."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()
    return url


def draft(url: str, *hints: str) -> str:
    """The draft for one database."""
    return render(discover([url], [], identifier_types(list(hints), {})))


def test_the_transaction_refuses_writes(sql_url: str) -> None:
    """Inside discover's read-only transaction an INSERT fails on every engine, and nothing is written."""
    make(sql_url, ["CREATE TABLE t (id INTEGER PRIMARY KEY, email VARCHAR(50))", "INSERT INTO t VALUES (1, 'a@b.c')"])
    with pytest.raises(sa_exc.DBAPIError), read_only(parse_url(sql_url)) as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2, 'x@y.z')")
    engine = sa.create_engine(sql_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1
    engine.dispose()


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    """A SQLite URL naming no file fails to connect, and leaves no file behind."""
    with pytest.raises(ErasureError, match="cannot connect to sqlite:///"):
        discover([f"sqlite:///{tmp_path}/absent.db"], [], identifier_types([], {}))
    assert not (tmp_path / "absent.db").exists()


def test_at_most_1000_rows_a_table_are_sampled(sqlite_url: str) -> None:
    """A table of 1,500 rows is sampled 1,000 rows deep, and the share says so."""
    make(sqlite_url, ["CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT)",
                      *(f"INSERT INTO people VALUES ({i}, 'p{i}@example.org')" for i in range(1500))])
    with read_only(parse_url(sqlite_url)) as conn:
        tables = reflect(conn, identifier_types([], {}))
    assert tables["people"].sampled == 1000
    assert "100% of 1000 sampled values match email's pattern" in draft(sqlite_url)


def test_declared_foreign_keys_are_walked_whatever_their_names(sqlite_url: str) -> None:
    """purchases.buyer and lines.purchase, declared, make purchases and lines the subject's; places is shared."""
    tables = {t["name"]: t for t in tomllib.loads(draft(make(sqlite_url, SHOP)))["systems"][0]["tables"]}
    assert tables["purchases"]["where"] == {"buyer": "users.id"}
    assert tables["lines"]["where"] == {"purchase": "purchases.id"}
    assert (tables["places"]["action"], tables["places"]["where"]) == ("anonymize", {"id": "purchases.ship_to"})
    assert "parcels" not in tables


def test_a_unique_not_null_column_is_left_out_of_set_and_risk_listed(sqlite_url: str) -> None:
    """places.phone, NOT NULL and unique, cannot take one value: left out of `set`, on the risk list."""
    text = draft(make(sqlite_url, SHOP))
    places = next(t for t in tomllib.loads(text)["systems"][0]["tables"] if t["name"] == "places")
    assert places["set"] == {"street": "", "postcode": "null"}
    assert "places.phone" in text.split("# RISK LIST")[1]


def test_composite_keys_and_self_references_are_noted_not_followed(sqlite_url: str) -> None:
    """A composite foreign key and users.referred_by are not walked; both are noted, the self-reference as
    a key that makes deleting a referred user fail."""
    text = draft(make(sqlite_url, SHOP))
    assert "composite foreign key (purchase, n) -> lines(purchase, n) not followed" in text
    assert "users.referred_by -> users.id (foreign key), no ON DELETE rule: a row that is not the subject's" in text
    assert text.count('name   = "users"') == 1


def test_the_draft_erases_in_an_order_the_foreign_keys_accept(sqlite_url: str, tmp_path: Path) -> None:
    """With SQLite enforcing the keys, erasing user 1 deletes their purchase and lines and blanks their place."""
    path = tmp_path / "erasure.toml"
    path.write_text(draft(make(sqlite_url, [*SHOP, "UPDATE users SET referred_by = NULL"])))
    rt = Runtime(load(path), dispatch=ListDispatch())
    try:
        request_id = intake.submit(rt, {"email": "ANN@example.org"}).request_id
        drain(rt)
        assert views.status(rt, request_id)["status"] == "completed"
    finally:
        rt.close()
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM users").scalars().all() == [2]
        assert conn.exec_driver_sql("SELECT purchase FROM lines").scalars().all() == [200]
        assert conn.exec_driver_sql("SELECT * FROM places ORDER BY id").all() == [
            (10, "", None, "+4400001"), (20, "Low Road 2", "CD2", "+4400002")]
    engine.dispose()


def test_links_are_inferred_from_names_only_to_a_key_of_the_same_kind(sqlite_url: str) -> None:
    """`billing_account_id` links to accounts.id; a text `account_id` does not link to an integer key."""
    make(sqlite_url, ["CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT)",
                      "CREATE TABLE invoices (id INTEGER PRIMARY KEY, billing_account_id INTEGER)",
                      "CREATE TABLE notes (id INTEGER PRIMARY KEY, account_id VARCHAR(20))"])
    with read_only(parse_url(sqlite_url)) as conn:
        tables = reflect(conn, identifier_types([], {}))
    assert [(link.column, link.table, link.target, link.declared) for link in tables["invoices"].links] == [
        ("billing_account_id", "accounts", "id", False)]
    assert tables["notes"].links == []


def test_columns_the_engine_cannot_compare_do_not_stop_the_reading(postgres_url: str) -> None:
    """An enum of emails cannot be compared with a varchar on PostgreSQL: the table is kept by its name,
    and the reading goes on in the same read-only transaction."""
    make(postgres_url, ["CREATE TYPE address AS ENUM ('a@x.org', 'b@x.org')",
                        "CREATE TABLE users (id SERIAL PRIMARY KEY, email VARCHAR(50))",
                        "CREATE TABLE alerts (id SERIAL PRIMARY KEY, email address)",
                        "CREATE TABLE zlogins (id SERIAL PRIMARY KEY, email VARCHAR(50))",
                        "INSERT INTO users (email) VALUES ('a@x.org')", "INSERT INTO alerts (email) VALUES ('a@x.org')",
                        "INSERT INTO zlogins (email) VALUES ('a@x.org')"])
    text = draft(postgres_url)
    assert "alerts: holds email in email: its rows cannot be compared" in text
    assert "zlogins: holds email in email: 100% of 1 sampled zlogins.email values are found in users.email" in text
