"""Resolvers find a person however their identifier is stored: the contract's own query, on a
table whose emails are stored upper case (as MySQL's Sakila stores them), derives the user id."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import MakeRuntime, drain, resolver, system_table
from worker.engine import intake
from worker.surfaces import views


@pytest.mark.parametrize("query", ["SELECT id FROM users WHERE email = :email",
                                   "SELECT u.id FROM users AS u WHERE lower(u.email) = :email"])
def test_a_resolver_finds_an_upper_case_stored_email(make_runtime: MakeRuntime, tmp_path: Path, query: str) -> None:
    """`mary.smith@...` typed in lower case resolves to the user whose row says `MARY.SMITH@...`, and only
    her rows keyed by that id are erased."""
    app = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{app}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql("CREATE TABLE rentals (id INTEGER PRIMARY KEY, user_id INTEGER)")
        conn.exec_driver_sql("INSERT INTO users VALUES (1, 'MARY.SMITH@sakilacustomer.org'), "
                             "(2, 'mary.smithe@sakilacustomer.org')")
        conn.exec_driver_sql("INSERT INTO rentals VALUES (10, 1), (11, 1), (12, 2)")
    rt = make_runtime(
        resolver("app-db", "email", "user_id", query)
        + system_table("app-db", "sql", url=f"sqlite:///{app}",
                       tables=[{"name": "rentals", "where": {"user_id": "user_id"}, "action": "delete"}]))
    request_id = intake.submit(rt, {"email": "Mary.Smith@SakilaCustomer.org"}).request_id
    drain(rt)
    status = views.status(rt, request_id)
    assert (status["status"], status["systems"][0]["items_erased"]) == ("completed", 2)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM rentals").scalars().all() == [12]
    engine.dispose()
