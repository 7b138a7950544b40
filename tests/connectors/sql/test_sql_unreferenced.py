"""`delete_unreferenced` and pseudonyms on the Fides sample's schema (its tables, with the foreign
keys its columns imply declared), on real SQLite, PostgreSQL and MariaDB: an address goes with the
last customer who refers to it, and stays, anonymized, while another row refers to it."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import Subject
from connectors.errors import ConfigError, PermanentError
from connectors.sql.config import Mask, SqlConfig
from connectors.sql.connector import SqlConnector
from connectors.sql.masks import Masker
from tests.helpers import sql_connector, system_config

KEY = b"pseudonyms of the fides sample!!"
HASH = {"hash": True}
FIDES: list[dict[str, Any]] = [
    {"name": "customer", "where": {"email": "email"}, "action": "delete"},
    {"name": "login", "where": {"customer_id": "customer.id"}, "action": "delete"},
    {"name": "address", "where": {"id": "customer.address_id"}, "action": "delete_unreferenced",
     "set": {"street": HASH, "city": "", "state": "", "zip": "null", "house": "null"}},
    {"name": "visit", "where": {"email": "email"}, "action": "anonymize", "set": {"email": HASH}},
    {"name": "service_request", "where": {"email": "email"}, "action": "anonymize",
     "set": {"email": HASH, "alt_email": HASH}},
]
CREATED, VISITED = datetime(2020, 4, 1, 11, 47, 42), datetime(2021, 1, 6, 1, 0, 0)
ROWS: dict[str, list[tuple[Any, ...]]] = {  # the sample's rows, and customers 4 and 5 sharing address 5
    "address": [(1, 123, "Example Street", "Exampletown", "NY", "12345"),
                (2, 4, "Example Lane", "Exampletown", "NY", "12321"),
                (3, 555, "Example Ave", "Example City", "NY", "12000"),
                (4, 1111, "Example Place", "Example Mountain", "TX", "54321"),
                (5, 9, "Shared Street", "Sharetown", "NY", "10001")],
    "customer": [(1, "customer-1@example.com", "John Customer", CREATED, 1),
                 (2, "customer-2@example.com", "Jill Customer", CREATED, 2),
                 (3, "jane@example.com", "Jane Customer", CREATED, 4),
                 (4, "customer-4@example.com", "Joe Flatmate", CREATED, 5),
                 (5, "customer-5@example.com", "Jo Flatmate", CREATED, 5),
                 (6, "customer-6@example.com", "Kim Neighbour", CREATED, 3)],  # where the employees live
    "employee": [(1, "employee-1@example.com", "Jack Employee", 3), (2, "employee-2@example.com", "Jane Employee", 3)],
    "login": [*((i, 1, VISITED) for i in range(1, 7)), (7, 2, VISITED), (8, 3, VISITED), (9, 4, VISITED),
              (10, 5, VISITED)],
    "visit": [("customer-1@example.com", VISITED), ("customer-2@example.com", VISITED),
              ("customer-4@example.com", VISITED)],
    "service_request": [
        ("ser_aaa-aaa", "customer-1@example.com", "customer-1-alt@example.com", date(2021, 1, 1), None, 1),
        ("ser_bbb-bbb", "customer-2@example.com", None, date(2021, 1, 4), None, 1),
        ("ser_ccc-ccc", "customer-3@example.com", None, date(2021, 1, 5), None, 1),
        ("ser_eee-eee", "customer-4@example.com", "flat@example.com", date(2021, 6, 1), None, 2),
        ("ser_fff-fff", "customer-5@example.com", "flat@example.com", date(2021, 6, 2), None, 2)],
}


def fides(url: str, tables: list[dict[str, Any]] = FIDES) -> SqlConnector:
    """A connector for the `postgres_example` system with these tables, given the pseudonym key."""
    connector = sql_connector({"name": "postgres_example", "kind": "sql", "url": url, "tables": tables})
    connector.use_pseudonym_key(lambda: KEY)
    return connector


def customer(n: int) -> Subject:
    """The subject of customer n, known by their email."""
    return Subject({"email": (f"customer-{n}@example.com",)})


@pytest.fixture
def world(sql_url: str) -> Iterator[sa.Engine]:
    """The Fides sample's world on each engine."""
    engine = fides_world(sql_url)
    yield engine
    engine.dispose()


def fides_world(url: str) -> sa.Engine:
    """The Fides sample's tables (address ids as BIGINT, as its references are) with enforced foreign keys."""
    engine, metadata = sa.create_engine(url), sa.MetaData()

    def table(name: str, *columns: sa.Column[Any], key: tuple[str, ...] = ("id",)) -> None:
        sa.Table(name, metadata, *columns, sa.PrimaryKeyConstraint(*key), mysql_engine="InnoDB")

    def text(name: str) -> sa.Column[Any]:
        return sa.Column(name, sa.String(100))

    table("address", sa.Column("id", sa.BigInteger, autoincrement=False), sa.Column("house", sa.Integer),
          text("street"), text("city"), text("state"), text("zip"))
    table("customer", sa.Column("id", sa.Integer, autoincrement=False), text("email"), text("name"),
          sa.Column("created", sa.DateTime), sa.Column("address_id", sa.BigInteger, sa.ForeignKey("address.id")))
    table("employee", sa.Column("id", sa.Integer, autoincrement=False), text("email"), text("name"),
          sa.Column("address_id", sa.BigInteger, sa.ForeignKey("address.id")))
    table("login", sa.Column("id", sa.Integer, autoincrement=False),
          sa.Column("customer_id", sa.Integer, sa.ForeignKey("customer.id")), sa.Column("time", sa.DateTime))
    table("visit", text("email"), sa.Column("last_visit", sa.DateTime), key=("email", "last_visit"))
    table("service_request", text("id"), text("email"), text("alt_email"), sa.Column("opened", sa.Date),
          sa.Column("closed", sa.Date), sa.Column("employee_id", sa.Integer, sa.ForeignKey("employee.id")))
    metadata.create_all(engine)
    with engine.begin() as conn:
        for name, rows in ROWS.items():
            columns = [c.name for c in metadata.tables[name].columns]
            conn.execute(metadata.tables[name].insert(), [dict(zip(columns, row, strict=True)) for row in rows])
    return engine


def dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a fixed order."""
    with engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY 1, 2"))]  # noqa: S608
                for name in ROWS}


def checksum(engine: sa.Engine, name: str, keep: Any) -> str:
    """A digest of one table's rows the predicate keeps, every column as the driver returns it."""
    return hashlib.sha256(repr([row for row in dump(engine)[name] if keep(row)]).encode()).hexdigest()


def pseudonym(value: str) -> str:
    """The pseudonym of a value in a VARCHAR(100) column under the test's key."""
    return str(Masker(KEY).mask(Mask("hash"), value, 64))


def test_an_address_only_the_subject_refers_to_is_deleted(world: sa.Engine, sql_url: str) -> None:
    """Customer 1 goes with their logins and their address; every other row stays byte for byte."""
    theirs = {"visit": lambda r: r[0] in ("customer-1@example.com", pseudonym("customer-1@example.com")),
              "service_request": lambda r: r[0] == "ser_aaa-aaa"}
    others = {name: checksum(world, name, lambda r, mine=mine: not mine(r)) for name, mine in theirs.items()}
    before = dump(world)
    with fides(sql_url) as sql:
        outcome = sql.erase(customer(1))
    assert {t["table"]: t for t in outcome.evidence["tables"]}["address"] == {
        "table": "address", "action": "delete_unreferenced", "rows": 1, "rows_deleted": 1, "rows_anonymized": 0}
    after = dump(world)
    assert after["address"] == before["address"][1:] and after["customer"] == before["customer"][1:]
    assert after["login"] == before["login"][6:] and after["employee"] == before["employee"]
    assert {name: checksum(world, name, lambda r, mine=mine: not mine(r)) for name, mine in theirs.items()} == others
    assert [r[1:3] for r in dump(world)["service_request"] if r[0] == "ser_aaa-aaa"] == [
        (pseudonym("customer-1@example.com"), pseudonym("customer-1-alt@example.com"))]
    assert outcome.items_erased == 1 + 6 + 1 + 1 + 1


def test_a_shared_address_stays_anonymized_for_the_other_customer(world: sa.Engine, sql_url: str) -> None:
    """Customer 4's address is also customer 5's: it is anonymized with `set`, not deleted."""
    before = dump(world)
    with fides(sql_url) as sql:
        outcome = sql.erase(customer(4))
    assert {t["table"]: t for t in outcome.evidence["tables"]}["address"] == {
        "table": "address", "action": "delete_unreferenced", "rows": 1, "rows_deleted": 0, "rows_anonymized": 1}
    after = dump(world)
    assert after["address"] == [*before["address"][:4], (5, None, pseudonym("Shared Street"), "", "", None)]
    assert [c[0] for c in after["customer"]] == [1, 2, 3, 5, 6] and after["customer"][3][4] == 5


@pytest.mark.parametrize("config_order", ["as listed", "reversed"])
@pytest.mark.parametrize("erased_first", [4, 5])
def test_a_shared_address_goes_with_its_last_customer(world: sa.Engine, sql_url: str, config_order: str,
                                                      erased_first: int) -> None:
    """Whichever flatmate goes first, and in whatever order the tables are listed, the address is
    anonymized at the first erasure and deleted at the second."""
    tables = FIDES if config_order == "as listed" else FIDES[::-1]
    with fides(sql_url, tables) as sql:
        first = {t["table"]: t for t in sql.erase(customer(erased_first)).evidence["tables"]}["address"]
        second = {t["table"]: t for t in sql.erase(customer(9 - erased_first)).evidence["tables"]}["address"]
    assert (first["rows_deleted"], first["rows_anonymized"], second["rows_deleted"]) == (0, 1, 1)
    assert [a[0] for a in dump(world)["address"]] == [1, 2, 3, 4]


def test_an_address_an_unlisted_table_refers_to_stays(world: sa.Engine, sql_url: str) -> None:
    """Customer 6 lives where the employees do: the employee table is not listed, its rows still count."""
    with fides(sql_url) as sql:
        sql.erase(customer(6))
    address = {a[0]: a for a in dump(world)["address"]}[3]
    assert address == (3, None, pseudonym("Example Ave"), "", "", None)


def test_an_address_a_kept_row_refers_to_stays(world: sa.Engine, sql_url: str) -> None:
    """A subject's row that is anonymized, not deleted, still refers to its address: the address stays."""
    tables = copy.deepcopy(FIDES)
    tables[0] = {"name": "customer", "where": {"email": "email"}, "action": "anonymize",
                 "set": {"email": HASH, "name": ""}}
    tables[1] = {"name": "login", "where": {"customer_id": "customer.id"}, "action": "delete"}
    with fides(sql_url, tables) as sql:
        sql.erase(customer(1))
    assert {a[0]: a for a in dump(world)["address"]}[1][2] == pseudonym("Example Street")


def test_verify_counts_rows_neither_deleted_nor_anonymized(world: sa.Engine, sql_url: str) -> None:
    """Customer 4's rows are counted before (customer, login, address, visit, request) and none after."""
    with fides(sql_url) as sql:
        assert sql.verify(customer(4)) == 5
        sql.erase(customer(4))
        assert sql.verify(customer(4)) == 0
        assert sql.erase(customer(4)).items_erased == 0


def test_a_pseudonym_is_stable_keyed_and_joins(world: sa.Engine, sql_url: str) -> None:
    """Two subjects' shared alt_email gets one pseudonym (the keyed HMAC, not a plain SHA-256), and a
    visit still joins its service request on the pseudonymized email."""
    join = "SELECT v.email FROM visit v JOIN service_request s ON s.email = v.email"
    with world.connect() as conn:
        joined_before = len(conn.execute(sa.text(join)).all())
    with fides(sql_url) as sql:
        sql.erase(customer(4))
        sql.erase(customer(5))
    requests = {r[0]: r for r in dump(world)["service_request"]}
    shared = requests["ser_eee-eee"][2]
    assert shared == requests["ser_fff-fff"][2] == pseudonym("flat@example.com") and len(shared) == 64
    assert hashlib.sha256(b"flat@example.com").hexdigest()[:56] != shared[:56]
    with world.connect() as conn:
        joined = [r[0] for r in conn.execute(sa.text(join))]
    assert len(joined) == joined_before == 3 and pseudonym("customer-4@example.com") in joined


def test_a_failure_after_tables_changed_rolls_them_all_back(world: sa.Engine, sql_url: str) -> None:
    """With no pseudonym key the address (the one table that masks, changed last) fails: nothing is changed."""
    before = dump(world)
    connector = sql_connector({"name": "postgres_example", "kind": "sql", "url": sql_url, "tables": FIDES[:3]})
    with connector as sql, pytest.raises(PermanentError, match="'postgres_example': no pseudonym key"):
        sql.erase(customer(1))
    assert dump(world) == before


def test_delete_unreferenced_needs_set() -> None:
    """A delete_unreferenced table must say what becomes of the rows it keeps: `set` is required."""
    tables = copy.deepcopy(FIDES)
    del tables[2]["set"]
    with pytest.raises(ConfigError, match=r"system 'postgres_example' tables\[2\]: set: missing"):
        system_config(SqlConfig, {"name": "postgres_example", "kind": "sql", "url": "sqlite:///x.db", "tables": tables})


def test_a_table_in_another_schema_refers_too(postgres_url: str) -> None:
    """On PostgreSQL a row of another schema's table that refers to the address keeps it."""
    world = fides_world(postgres_url)
    with world.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA backup_schema")
        conn.exec_driver_sql("CREATE TABLE backup_schema.parcel (id INT PRIMARY KEY, address_id BIGINT "
                             "REFERENCES public.address (id))")
        conn.exec_driver_sql("INSERT INTO backup_schema.parcel VALUES (1, 2)")
    with fides(postgres_url) as sql:
        outcome = sql.erase(customer(2))
    assert {t["table"]: t for t in outcome.evidence["tables"]}["address"]["rows_anonymized"] == 1
    assert [a[0] for a in dump(world)["address"]] == [1, 2, 3, 4, 5]
    world.dispose()


def test_a_chain_in_a_table_that_refers_to_itself_goes_down_to_a_referred_row(sql_url: str) -> None:
    """The subject's replies go from the last up, and stop at the one another's reply answers."""
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    sa.Table("reply", metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("parent_id", sa.Integer, sa.ForeignKey("reply.id")), sa.Column("author", sa.String(100)),
             mysql_engine="InnoDB")
    metadata.create_all(engine)
    with engine.begin() as conn:  # 1 <- 2 <- 3 are the subject's, 4 (another's) answers 1; 5 <- 6 the subject's
        conn.execute(metadata.tables["reply"].insert(), [
            {"id": 1, "parent_id": None, "author": "a@x.io"}, {"id": 2, "parent_id": 1, "author": "a@x.io"},
            {"id": 3, "parent_id": 2, "author": "a@x.io"}, {"id": 4, "parent_id": 1, "author": "b@x.io"},
            {"id": 5, "parent_id": None, "author": "a@x.io"}, {"id": 6, "parent_id": 5, "author": "a@x.io"}])
    tables = [{"name": "reply", "where": {"author": "email"}, "action": "delete_unreferenced",
               "set": {"author": "null"}}]
    with fides(sql_url, tables) as sql:
        outcome = sql.erase(Subject({"email": ("a@x.io",)}))
    with engine.connect() as conn:
        left = [tuple(r) for r in conn.execute(sa.text("SELECT id, parent_id, author FROM reply ORDER BY id"))]
    engine.dispose()
    assert left == [(1, None, None), (4, 1, "b@x.io")]
    assert outcome.evidence["tables"][0] == {"table": "reply", "action": "delete_unreferenced", "rows": 5,
                                             "rows_deleted": 4, "rows_anonymized": 1}
