"""Which columns discover calls personal and which identifier types they hold: by name rules with
their boundaries, by hints, and by the share of sampled values an identifier's pattern takes (never
by a pattern that takes plain numbers or words); and identity tables chosen by hints or by score."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa

from worker.config import load
from worker.discover.classify import by_name, classify
from worker.discover.draft import render
from worker.discover.identifiers import identifier_types
from worker.discover.model import Column, Table, tally
from worker.discover.run import discover
from worker.errors import InputError


def make(url: str, *statements: str) -> str:
    """Run the statements on the database at url; the url."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()
    return url


def tables_of(text: str) -> dict[str, list[dict[str, object]]]:
    """A draft's sql tables by name (a table may have several entries)."""
    found: dict[str, list[dict[str, object]]] = {}
    for table in tomllib.loads(text)["systems"][0]["tables"]:
        found.setdefault(table["name"], []).append(table)
    return found


@pytest.mark.parametrize(("name", "kind", "category"), [
    ("email", "text", "email"), ("contactEmail", "text", "email"), ("email_verified", "boolean", None),
    ("zip", "text", "address"), ("tip", "text", None), ("last_ip", "text", "ip"), ("phone_number", "text", "phone"),
    ("date_of_birth", "date", "birth date"), ("dob", "date", "birth date"), ("birthday_count", "integer", None),
    ("first_name", "text", "name"), ("product_name", "text", None), ("user_id", "integer", "user id"),
    ("ccn", "integer", "payment"), ("street", "text", "address"), ("description", "text", None),
])
def test_name_rules_and_their_boundaries(name: str, kind: str, category: str | None) -> None:
    """A column's name puts it in a category only as a whole word of its name and only for fitting kinds."""
    found = by_name(Column(name, kind))
    assert (found[0] if found else None) == category


def test_values_make_a_column_hold_a_type_the_name_does_not_say() -> None:
    """A `contact` column of emails holds email by its values; a few emails in `notes` make it personal only."""
    types = identifier_types([], {})
    table = Table("people", {"contact": Column("contact", "text"), "notes": Column("notes", "text")})
    table.tallies = {"contact": tally([f"p{i}@example.org" for i in range(9)] + ["n/a"], types),
                     "notes": tally(["call back", "ok", "x@y.z", "later", None], types)}
    found = classify(table, types)
    assert found["contact"].types == ("email",)
    assert "90% of 10 sampled values match email's pattern" in found["contact"].evidence
    assert (found["notes"].types, found["notes"].category) == ((), "values like email")


def test_a_pattern_taking_plain_numbers_says_nothing_about_values() -> None:
    """Postcodes of digits are not user ids: user_id's pattern takes any number, so values do not count."""
    types = identifier_types([], {})
    table = Table("places", {"code": Column("code", "text")})
    table.tallies = {"code": tally(["12345", "54321"], types)}
    assert classify(table, types) == {}


def test_the_identity_table_is_the_table_of_people_most_refer_to(sqlite_url: str) -> None:
    """Without hints, customers (two tables refer to it) is the identity table, not staff (one)."""
    make(sqlite_url, "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)",
         "CREATE TABLE staff (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT)",
         "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, staff_id INTEGER)",
         "CREATE TABLE tickets (id INTEGER PRIMARY KEY, customer_id INTEGER)",
         "INSERT INTO customers VALUES (1, 'c@example.org')", "INSERT INTO staff VALUES (1, 's@example.org', 'S')")
    text = render(discover([sqlite_url], [], identifier_types([], {})))
    tables = tables_of(text)
    assert tables["customers"][0]["where"] == {"id": "user_id"}
    assert set(tables) == {"customers", "orders", "tickets"}
    assert "staff.email" in text.split("# RISK LIST")[1]


def test_a_table_column_hint_names_the_identity_table(sqlite_url: str) -> None:
    """`--identifier member_no=staff.id` makes staff the identity table, its type drafted as digits (an integer key)."""
    make(sqlite_url, "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)",
         "CREATE TABLE staff (id INTEGER PRIMARY KEY, email TEXT)",
         "CREATE TABLE shifts (id INTEGER PRIMARY KEY, staff_id INTEGER)")
    text = render(discover([sqlite_url], [], identifier_types(["member_no=staff.id"], {})))
    tables = tables_of(text)
    assert tables["staff"][0]["where"] == {"id": "member_no"}
    assert tables["shifts"][0]["where"] == {"staff_id": "staff.id"}
    assert tomllib.loads(text)["identifiers"] == {"member_no": {"pattern": "^[0-9]{1,18}$"}}


def test_a_column_hint_and_a_configs_types_are_used(sqlite_url: str, tmp_path: Path) -> None:
    """A config's type (with its pattern and fold) and `--identifier email=contact` find the columns they name."""
    config = tmp_path / "given.toml"
    config.write_text("[identifiers]\ncode = { pattern = '^C-[0-9]{6}$', normalize = \"upper\" }\n"
                      "[[systems]]\nname = \"x\"\nkind = \"stub\"\nuses = [\"code\"]\n")
    make(sqlite_url, "CREATE TABLE clients (id INTEGER PRIMARY KEY, ref TEXT, contact TEXT)",
         "INSERT INTO clients VALUES (1, 'c-000001', 'a@b.c'), (2, 'C-000002', 'd@e.f')")
    types = identifier_types(["email=contact"], load(config).identifiers)
    text = render(discover([sqlite_url], [], types))
    assert [entry["where"] for entry in tables_of(text)["clients"]] == [{"ref": "code"}, {"contact": "email"}]
    assert tomllib.loads(text)["identifiers"]["code"] == {"pattern": "^C-[0-9]{6}$", "normalize": "upper"}
    assert "100% of 2 sampled values match code's pattern" in text  # c-000001 counts: folded upper first


@pytest.mark.parametrize("option", ["email", "=email", "email=", "email=a.b.c d", "bad-name=email"])
def test_a_malformed_identifier_option_is_refused(option: str) -> None:
    """`--identifier` must be TYPE=COLUMN or TYPE=TABLE.COLUMN with plain names."""
    with pytest.raises(InputError, match="--identifier"):
        identifier_types([option], {})
