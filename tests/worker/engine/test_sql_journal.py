"""The journal for sql systems: a pass's rows per request are noted in the store inside the target's
transaction, just before it commits, so an attempt that dies after the commit and before the store
records its outcome loses no count; one that dies before the commit (rolled back) counts once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import Journal
from connectors.sql.connector import SqlConnector
from tests.helpers import MakeRuntime, after_a_death, drain, system_table
from worker.engine import intake
from worker.runtime import Runtime
from worker.surfaces import views


def app_db(tmp_path: Path) -> str:
    """A SQLite database: user 7 with two orders, user 8 with one; its URL."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER)")
        conn.exec_driver_sql("INSERT INTO users VALUES (7, 'bob@example.com'), (8, 'eve@example.com')")
        conn.exec_driver_sql("INSERT INTO orders VALUES (1, 7), (2, 7), (3, 8)")
    engine.dispose()
    return url


def runtime(make_runtime: MakeRuntime, url: str) -> Runtime:
    """One sql system deleting a user and their orders."""
    return make_runtime(system_table("app-db", "sql", url=url, tables=[
        {"name": "orders", "where": {"user_id": "user_id"}, "action": "delete"},
        {"name": "users", "where": {"id": "user_id"}, "action": "delete"}]))


def rows(url: str) -> dict[str, list[int]]:
    """The users' and orders' ids left."""
    with sa.create_engine(url).connect() as conn:
        return {t: conn.exec_driver_sql(f"SELECT id FROM {t} ORDER BY id").scalars().all()  # noqa: S608
                for t in ("users", "orders")}


@pytest.mark.parametrize("dies", ["after the change", "before the change"])
def test_rows_committed_or_journaled_by_an_attempt_that_died_are_counted_once(make_runtime: MakeRuntime,
                                                                             tmp_path: Path, dies: str) -> None:
    """Killed after its commit (user 7 and two orders gone) and before the store's record, the first attempt's
    3 rows are counted by the second, which finds nothing, from the journal; killed after journaling and
    before its commit (rolled back: nothing changed), the second erases them and counts 3, not 6."""
    url = app_db(tmp_path)
    system, evidence = after_a_death(runtime(make_runtime, url), "app-db", {"user_id": "7"}, dies)

    assert rows(url) == {"users": [8], "orders": [3]}
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, 3)
    if dies == "after the change":
        assert evidence["by_an_earlier_attempt"] == {"rows": 3}
        assert [t["rows"] for t in evidence["tables"]] == [0, 0]
    else:
        assert "by_an_earlier_attempt" not in evidence


def test_a_pass_whose_claim_lapsed_commits_nothing(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A claim no longer this process's (its lease was taken back) stops the pass at the journal, before
    the commit: the rows stay, and the attempt after erases and counts them once."""
    url = app_db(tmp_path)
    rt = runtime(make_runtime, url)
    request_id = intake.submit(rt, {"user_id": "7"}).request_id
    connector = rt.connector("app-db")
    assert isinstance(connector, SqlConnector)
    erase_many, seen = connector.erase_many, []

    def lapsed(subjects: Any, journal: Journal | None = None) -> Any:
        if not seen:  # as if the reconciler had given the claim to another worker meanwhile
            for claim, until in rt.held().items():
                rt.hold(*claim, until.replace(year=2000))
        seen.append(rows(url))
        return erase_many(subjects, journal)

    connector.erase_many = lapsed  # type: ignore[method-assign]
    drain(rt)

    assert seen[1] == {"users": [7, 8], "orders": [1, 2, 3]}  # the first attempt changed nothing
    assert rows(url) == {"users": [8], "orders": [3]}
    system = views.status(rt, request_id)["systems"][0]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, 3)
