"""Resolvers find a person however their identifier is stored: the contract's own query, on a
table whose emails are stored upper case (as MySQL's Sakila stores them), derives the user id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.worker.conftest import drain
from worker.engine import intake
from worker.runtime import Runtime
from worker.surfaces import views

MakeRuntime = Callable[..., Runtime]


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
        f'[[resolvers]]\nsystem = "app-db"\nfrom = "email"\nto = "user_id"\nquery = "{query}"\n'
        f'[[systems]]\nname = "app-db"\nkind = "sql"\nurl = "sqlite:///{app}"\n'
        '[[systems.tables]]\nname = "rentals"\nwhere = { user_id = "user_id" }\naction = "delete"\n')
    request_id = intake.submit(rt, {"email": "Mary.Smith@SakilaCustomer.org"}).request_id
    drain(rt)
    status = views.status(rt, request_id)
    assert (status["status"], status["systems"][0]["items_erased"]) == ("completed", 2)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM rentals").scalars().all() == [12]
    engine.dispose()
