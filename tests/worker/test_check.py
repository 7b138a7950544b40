"""`erasure check`'s engine on sql systems and resolvers, against real SQLite, PostgreSQL and MariaDB
databases: a good config passes; a dropped column, a missing table, a foreign key that would stop a
delete, a mask the column cannot take, a query with a typo each fail naming what; a column that cannot
hold every value of its identifier type is a note; and nothing is ever written."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import resolver, system_table, write_config
from worker.config import load
from worker.engine import check

SCHEMA = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(200), name VARCHAR(10))",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, email VARCHAR(200),"
    " FOREIGN KEY (user_id) REFERENCES users (id))",
    "CREATE TABLE order_items (id INTEGER PRIMARY KEY, order_id INTEGER,"
    " FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE)",
]
ROWS = ["INSERT INTO users VALUES (1, 'a@x.example', 'Ann'), (2, 'b@x.example', 'Bo')",
        "INSERT INTO orders VALUES (10, 1, 'a@x.example'), (11, 2, 'b@x.example')",
        "INSERT INTO order_items VALUES (100, 10), (101, 11)"]
GOOD: list[dict[str, Any]] = [
    {"name": "users", "where": {"id": "user_id"}, "action": "delete"},
    {"name": "orders", "where": {"user_id": "user_id"}, "action": "anonymize",
     "set": {"email": "", "user_id": "null"}},
    {"name": "order_items", "where": {"order_id": "orders.id"}, "action": "delete"},
]
LOOKUP = "SELECT id FROM users WHERE email = :email"


def build(url: str, *extra: str) -> str:
    """The shop's schema and rows in the database (and any extra statements run after them); the url."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in (*SCHEMA, *ROWS, *extra):
            conn.exec_driver_sql(statement)
    engine.dispose()
    return url


def report(tmp_path: Path, url: str, tables: list[dict[str, Any]] = GOOD, resolvers: str = "") -> check.Report:
    """The check of a config with one sql system `shop` over the database, and the resolvers given."""
    return check.run(load(write_config(tmp_path, resolvers + system_table("shop", "sql", url=url, tables=tables))))


def problems(found: check.Report) -> list[str]:
    """Every problem of every system and resolver."""
    return [p for result in (*found.systems, *found.resolvers) for p in result.found.problems]


def checksums(url: str) -> dict[str, str]:
    """A SHA-256 of every table's rows, in key order."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        metadata = sa.MetaData()
        metadata.reflect(conn)
        sums = {name: hashlib.sha256(repr(conn.execute(sa.select(table).order_by(*table.primary_key.columns))
                                          .all()).encode()).hexdigest() for name, table in metadata.tables.items()}
    engine.dispose()
    return sums


def test_a_good_config_passes_on_every_engine(sql_url: str, tmp_path: Path) -> None:
    """Listed tables, columns, a table.column reference, foreign keys cleared in order, and resolvers
    written as a lookup and as a query that folds: all pass."""
    found = report(tmp_path, build(sql_url), resolvers=resolver("shop", "email", "user_id", LOOKUP)
                   + resolver("shop", "email", "user_id", "SELECT id FROM users WHERE lower(email) = :email"))
    assert problems(found) == [] and found.ok
    assert [r.to_json()["resolver"] for r in found.resolvers] == ["resolver 1 (email -> user_id)",
                                                                  "resolver 2 (email -> user_id)"]


def test_nothing_is_written_by_a_check(sql_url: str, tmp_path: Path) -> None:
    """Every table's rows are byte for byte as they were, after a passing and a failing check."""
    url = build(sql_url)
    before = checksums(url)
    report(tmp_path, url, resolvers=resolver("shop", "email", "user_id", LOOKUP))
    report(tmp_path, url, [*GOOD, {"name": "orders", "where": {"user_id": "user_id"}, "action": "delete"},
                           {"name": "users", "where": {"nickname": "user_id"}, "action": "delete"}])
    assert checksums(url) == before


def test_a_dropped_column_fails_naming_table_and_column(sql_url: str, tmp_path: Path) -> None:
    """A set column and a where column the tables no longer have each fail, named with their table."""
    url = build(sql_url, "ALTER TABLE orders DROP COLUMN email", "ALTER TABLE users DROP COLUMN name")
    tables = [*GOOD, {"name": "users", "where": {"name": "email"}, "action": "delete"}]
    assert problems(report(tmp_path, url, tables)) == [
        "table 'orders' has no column 'email' (set)", "table 'users' has no column 'name' (where)"]


def test_a_missing_table_fails(sql_url: str, tmp_path: Path) -> None:
    """A listed table the database lacks fails, named; the tables that are there are still looked at."""
    tables = [*GOOD, {"name": "invoices", "where": {"user_id": "user_id"}, "action": "delete"},
              {"name": "users", "where": {"nickname": "user_id"}, "action": "delete"}]
    assert problems(report(tmp_path, build(sql_url), tables)) == [
        "table 'invoices' does not exist", "table 'users' has no column 'nickname' (where)"]


def test_a_child_kept_with_its_key_stops_the_delete(sql_url: str, tmp_path: Path) -> None:
    """orders anonymized without clearing user_id would keep referring to the deleted users row: it fails,
    saying what to set."""
    tables = [GOOD[0], {"name": "orders", "where": {"user_id": "user_id"}, "action": "anonymize",
                        "set": {"email": ""}}, GOOD[2]]
    assert problems(report(tmp_path, build(sql_url), tables)) == [
        "the foreign key orders(user_id) -> users stops the delete: 'orders' (anonymize) keeps its rows, still "
        "referring to the subject's 'users' rows (set user_id = \"null\" there, or delete them)"]


def test_an_unlisted_child_stops_the_delete_unless_it_cascades(sql_url: str, tmp_path: Path) -> None:
    """A table not listed whose key refers to a deleted table fails; with ON DELETE CASCADE it passes."""
    url = build(sql_url, "CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER,"
                         " FOREIGN KEY (user_id) REFERENCES users (id))",
                "CREATE TABLE visits (id INTEGER PRIMARY KEY, user_id INTEGER,"
                " FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE)")
    assert problems(report(tmp_path, url)) == [
        "the foreign key logins(user_id) -> users stops the delete: 'logins' is not listed, so its rows referring "
        "to the subject's 'users' rows stay (list it, or give the key ON DELETE CASCADE or SET NULL)"]


def test_a_retained_child_stops_the_delete(sqlite_url: str, tmp_path: Path) -> None:
    """A child table under a retention keeps its rows, so deleting what they refer to fails."""
    tables = [*GOOD[:1], {**GOOD[1], "retain": {"reason": "tax law", "until": "2099-12-31"}}, GOOD[2]]
    assert problems(report(tmp_path, build(sqlite_url), tables)) == [
        "the foreign key orders(user_id) -> users stops the delete: 'orders' is retained (retained until "
        "2099-12-31: tax law), its rows still referring to the subject's 'users' rows"]


def test_an_integer_column_for_a_wider_pattern_is_a_note_not_a_failure(sqlite_url: str, tmp_path: Path) -> None:
    """users.id is an integer but the identifier takes letters too: the check passes with a note naming an
    example the pattern takes (made up, never a stored value)."""
    path = write_config(tmp_path, system_table("shop", "sql", url=build(sqlite_url), tables=GOOD),
                        identifiers={"user_id": {"pattern": r"^[A-Za-z0-9]{1,32}$"}})
    found = check.run(load(path))
    assert found.ok
    assert found.systems[0].found.notes == tuple(
        f"table {table!r} column {column!r} is INTEGER, but user_id's pattern also takes values such as 'a', which "
        "it cannot hold: a request carrying one finds nothing there (tighten the pattern, or check the column)"
        for table, column in (("users", "id"), ("orders", "user_id")))


def test_a_mask_the_column_cannot_take_fails(sqlite_url: str, tmp_path: Path) -> None:
    """{ hash = true } on a 10-character column fails, as erasing would, with the mask's own reason."""
    tables = [{"name": "users", "where": {"id": "user_id"}, "action": "anonymize", "set": {"name": {"hash": True}}}]
    assert problems(report(tmp_path, build(sqlite_url), tables)) == [
        "table 'users' column 'name': holds at most 10 characters; a hash needs 16"]


def test_a_resolver_query_with_a_typo_fails(sql_url: str, tmp_path: Path) -> None:
    """A query that does not prepare fails with the engine's reason; a lookup naming a missing column too."""
    found = report(tmp_path, build(sql_url), resolvers=resolver(
        "shop", "email", "user_id", "SELECT id FROM users WHER lower(email) = :email") + resolver(
        "shop", "email", "user_id", "SELECT id FROM users WHERE mail = :email"))
    first, second = found.resolvers
    assert not first.ok and first.found.problems[0].startswith("the query does not prepare: ")
    assert second.found.problems == ("table 'users' has no column 'mail'",)
    assert found.systems[0].ok and not found.ok


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_read_only_sqlite_file_fails(sqlite_url: str, tmp_path: Path) -> None:
    """A SQLite file this user cannot write fails: nothing could be erased from it."""
    url = build(sqlite_url)
    database = Path(sa.make_url(url).database or "")
    database.chmod(0o444)
    try:
        assert problems(report(tmp_path, url)) == [
            "the database file (or its folder, for the journal) is not writable by this user"]
    finally:
        database.chmod(0o644)


def test_mariadb_says_privileges_are_not_checked(mariadb_url: str, tmp_path: Path) -> None:
    """On MariaDB the check passes with a note that the privileges were not looked at."""
    found = report(tmp_path, build(mariadb_url))
    assert found.ok
    assert "privileges not checked: mysql tells them only as GRANT statements" in found.systems[0].found.notes


@pytest.fixture
def limited_role(postgres_url: str) -> Iterator[str]:
    """The shop's database and a role that may read and update it but never delete; its URL."""
    build(postgres_url)
    role = f"erasure_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'check-role'")
        conn.exec_driver_sql(f"GRANT SELECT, UPDATE ON users, orders, order_items TO {role}")
    yield sa.make_url(postgres_url).set(username=role, password="check-role").render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP OWNED BY {role}")
        conn.exec_driver_sql(f"DROP ROLE {role}")
    admin.dispose()


def test_postgresql_privileges_are_checked(limited_role: str, tmp_path: Path) -> None:
    """A PostgreSQL user without DELETE fails at each table it would delete from, and nowhere else."""
    assert problems(report(tmp_path, limited_role)) == [
        "table 'users': the database user lacks the privilege to DELETE",
        "table 'order_items': the database user lacks the privilege to DELETE"]


def test_a_sqlite_file_that_is_not_there_fails_and_is_not_made(tmp_path: Path) -> None:
    """A SQLite URL naming no file fails, and the check does not create it (erasing would)."""
    url = f"sqlite:///{tmp_path}/gone.db"
    found = report(tmp_path, url)
    assert found.systems[0].found.problems == ("sql system 'shop': OperationalError: unable to open database file",)
    assert not (tmp_path / "gone.db").exists()


def test_a_cycle_of_foreign_keys_leaves_no_working_order(sqlite_url: str, tmp_path: Path) -> None:
    """Two deleted tables referring to each other: whichever the order deletes first, the other's rows
    still refer to it, and the check says so."""
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (id INTEGER PRIMARY KEY, best_friend INTEGER REFERENCES pals (id))")
        conn.exec_driver_sql("CREATE TABLE pals (id INTEGER PRIMARY KEY, person INTEGER REFERENCES people (id))")
    engine.dispose()
    tables = [{"name": "people", "where": {"id": "user_id"}, "action": "delete"},
              {"name": "pals", "where": {"person": "user_id"}, "action": "delete"}]
    found = problems(report(tmp_path, sqlite_url, tables))
    assert len(found) == 1 and "stops the delete: the foreign keys form a cycle, and" in found[0]
