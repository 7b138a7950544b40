"""`erasure discover` on Fides' sample database (no foreign key declared) on SQLite, PostgreSQL and
MariaDB: the draft reaches every table holding a customer's personal data, puts employee and report
on the risk list, loads, and erases customer 1 everywhere while every other row stays as it was."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import ListDispatch, drain
from worker.config import load
from worker.discover.draft import render
from worker.discover.identifiers import identifier_types
from worker.discover.run import discover
from worker.engine import intake
from worker.runtime import Runtime
from worker.surfaces import views

CUSTOMER_TABLES = {"customer", "address", "orders", "order_item", "payment_card", "login", "visit", "service_request"}
# customer 1's rows, by table and primary key: deleted, or (address) anonymized
DELETED = {
    "customer": {(1,)}, "payment_card": {("pay_aaa-aaa",)}, "login": {(i,) for i in range(1, 7)},
    "orders": {("ord_aaa-aaa",), ("ord_ccc-ccc",), ("ord_ddd-ddd",)},
    "order_item": {("ord_aaa-aaa", 1), ("ord_ccc-ccc", 1), ("ord_ccc-ccc", 2), ("ord_ddd-ddd", 1)},
    "visit": {("customer-1@example.com",)}, "service_request": {("ser_aaa-aaa",)},
}
ANONYMIZED = {"address": {(1,), (2,)}}  # customer 1's home and billing address, and an order's shipping address
KEYS = {"visit": 1}  # how many leading columns identify a row (default: the first column, or two for order_item)


def draft_for(url: str) -> str:
    """The draft for one database, with the default identifier types."""
    return render(discover([url], [], identifier_types([], {})))


def rows(url: str) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Every row of every table, by its key columns."""
    engine = sa.create_engine(url)
    found: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        metadata = sa.MetaData()
        metadata.reflect(conn)
        for name, table in metadata.tables.items():
            width = 2 if name == "order_item" else KEYS.get(name, 1)
            found[name] = {tuple(row[:width]): tuple(row) for row in conn.execute(sa.select(table))}
    engine.dispose()
    return found


def test_the_draft_reaches_every_table_holding_a_customers_data(fides_url: str) -> None:
    """The draft's sql system lists exactly the tables holding customers' personal data."""
    draft = tomllib.loads(draft_for(fides_url))
    assert {table["name"] for table in draft["systems"][0]["tables"]} == CUSTOMER_TABLES


def test_employee_and_report_are_on_the_risk_list_with_a_reason(fides_url: str) -> None:
    """employee and report, whose email values no customer has, are risk-listed with the overlap found."""
    risk_list = draft_for(fides_url).split("# RISK LIST")[1]
    for column in ("employee.email", "employee.name", "report.email", "report.name"):
        assert column in risk_list
    assert "0% of 2 sampled employee.email values are found in customer.email" in risk_list
    assert "0% of 4 sampled report.email values are found in customer.email" in risk_list


def test_the_draft_says_why_each_table_is_there(fides_url: str) -> None:
    """Every table entry is preceded by a comment: identity, owned by a link, holding an identifier, or shared."""
    text = draft_for(fides_url)
    assert "# customer: an identity table" in text
    assert "# order_item: the subject's own rows: order_item.order_id -> orders.id" in text
    assert "# visit: holds email in email: 100% of 2 sampled visit.email values are found in customer.email" in text
    assert "# address: rows the subject's rows refer to, which others may share: anonymized, kept" in text
    assert "product holds no personal data" in text
    for table in CUSTOMER_TABLES:  # each table's first entry comes after the comment on it
        assert -1 < text.find(f"  # {table}: ") < text.find(f'name   = "{table}"'), table


@pytest.mark.parametrize("subject", [{"email": "Customer-1@Example.com"}, {"user_id": "1"}])
def test_an_erasure_with_the_draft_takes_customer_1_and_nothing_else(
        fides_url: str, tmp_path: Path, subject: dict[str, str]) -> None:
    """Erasing customer 1 (by email or by id) with the draft deletes their rows, anonymizes their
    addresses, and leaves every other row of every table as it was."""
    path = tmp_path / "erasure.toml"
    path.write_text(draft_for(fides_url))
    before = rows(fides_url)
    rt = Runtime(load(path), dispatch=ListDispatch())
    try:
        request_id = intake.submit(rt, subject).request_id
        drain(rt)
        status = views.status(rt, request_id)
    finally:
        rt.close()
    after = rows(fides_url)
    assert status["status"] == "completed", status
    for table, was in before.items():
        gone = DELETED.get(table, set())
        changed = ANONYMIZED.get(table, set())
        assert set(was) - set(after[table]) == gone, table
        assert {key for key in after[table] if after[table][key] != was[key]} == changed, table
    assert all(row[2:] == (None,) * 4 for key, row in after["address"].items() if key in ANONYMIZED["address"])
