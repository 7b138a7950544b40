"""The guard list: a completed request adds each of its subject's values (resolved ones too) as a keyed
hash, in the transaction that completes it; never a value; each value once; a failed request adds
nothing; requests completed before the guard list existed are added from the suppression list."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import MakeRuntime, drain, resolver, stub, system_table
from worker.engine import guard_list, intake
from worker.runtime import Runtime
from worker.store.models import GuardEntry, Request, Suppression

EMAIL, USER_ID = "Mary.Smith@Example.org", "424242424242"


def guard_rows(rt: Runtime) -> set[tuple[str, str, str]]:
    """(type, digest, request) of every guard entry."""
    with rt.transaction() as session:
        return {tuple(row) for row in session.execute(sa.select(GuardEntry.id_type, GuardEntry.digest,  # type: ignore[misc]
                                                                GuardEntry.request_id))}


def every_text(rt: Runtime) -> str:
    """Every row of every table of the store, as text."""
    found = []
    with rt.engine.connect() as conn:
        for name in sa.inspect(conn).get_table_names():
            found += [repr(tuple(row)) for row in conn.exec_driver_sql(f'SELECT * FROM "{name}"')]
    return "\n".join(found)


def submitted(rt: Runtime, **subject: str) -> str:
    request_id = intake.submit(rt, dict(subject)).request_id
    drain(rt)
    return request_id


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    """An application database whose users table says MARY.SMITH@EXAMPLE.ORG is user 424242424242."""
    path = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql(f"INSERT INTO users VALUES ({USER_ID}, 'MARY.SMITH@EXAMPLE.ORG'), (7, 'z@example.org')")
    engine.dispose()
    return path


def test_a_completed_request_adds_a_digest_per_value_resolved_ones_too(make_runtime: MakeRuntime,
                                                                       app_db: Path) -> None:
    """An email resolved to a user id: both values are in the guard list, as HMAC-SHA256 under the guard
    key of `TYPE \\0 VALUE` normalized, tied to the request; neither value is anywhere in the store."""
    rt = make_runtime(resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email")
                      + system_table("app-db", "sql", url=f"sqlite:///{app_db}",
                                     tables=[{"name": "users", "where": {"id": "user_id"}, "action": "delete"}]))
    request_id = submitted(rt, email=EMAIL)
    key = rt.keyring.guard_key()
    assert guard_rows(rt) == {("email", guard_list.digest(key, "email", EMAIL.lower()), request_id),
                              ("user_id", guard_list.digest(key, "user_id", USER_ID), request_id)}
    text = every_text(rt).lower()
    assert "guard_entries" in sa.inspect(rt.engine).get_table_names()
    assert EMAIL.lower() not in text and USER_ID not in text


def test_a_value_is_kept_once_with_the_first_request(make_runtime: MakeRuntime, store_url: str) -> None:
    """The same person asking twice, then again with one more identifier: one entry per value, each
    naming the request that brought it (insert-or-ignore, on SQLite and PostgreSQL alike)."""
    rt = make_runtime(stub("crm") + stub("mail", uses=["email"]), store_url=store_url)
    first = submitted(rt, user_id="42")
    submitted(rt, user_id="42")
    third = intake.submit(rt, {"user_id": "42", "email": "a@x.org"}).request_id
    drain(rt)
    key = rt.keyring.guard_key()
    assert guard_rows(rt) == {("user_id", guard_list.digest(key, "user_id", "42"), first),
                              ("email", guard_list.digest(key, "email", "a@x.org"), third)}


def test_a_failed_request_adds_nothing(make_runtime: MakeRuntime) -> None:
    """Only a completed request guards its subject."""
    rt = make_runtime(stub("crm", fail_permanently=True))
    request_id = submitted(rt, user_id="42")
    with rt.transaction() as session:
        assert session.get_one(Request, request_id).status == "failed"
    assert guard_rows(rt) == set()


def test_requests_completed_before_the_guard_list_are_added_from_suppression(make_runtime: MakeRuntime) -> None:
    """A store whose completed requests predate the guard list (their identifiers dropped, only the
    suppression entry kept) gets them on the next export or check; once in, they are not read again."""
    rt = make_runtime(stub("crm") + stub("mail", uses=["email"]))
    request_id = intake.submit(rt, {"user_id": "42", "email": "a@x.org"}).request_id
    drain(rt)
    before = guard_rows(rt)
    with rt.transaction() as session:
        session.execute(sa.delete(GuardEntry))
        assert session.get_one(Request, request_id).sealed_identifiers is None
        assert session.get(Suppression, request_id) is not None
    assert guard_list.backfill(rt) == 1
    assert guard_rows(rt) == before and len(before) == 2
    assert guard_list.backfill(rt) == 0
