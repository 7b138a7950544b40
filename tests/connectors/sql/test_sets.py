"""Set-based erasure of many subjects at once (connectors/sql/sets.py) against real SQLite, PostgreSQL and
MariaDB: each subject's outcome is that of erasing it alone, a subject whose rows fail the batch fails alone,
and no match widens across the batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from connectors.base import Outcome, Subject
from connectors.errors import ConnectorError, PermanentError, TransientError
from connectors.sql.connector import SqlConnector
from tests.helpers import MYSQL_ADMIN_URL, PG_ADMIN_URL, scratch_database, sql_connector
from tests.helpers.sql_world import ITEMS, ORDERS, TABLES, USERS, connector, dump, key, subject

KEY = bytes(range(32))
EVERYONE = [subject(user_id="42"), subject(user_id="4"), subject(user_id="420"), subject(user_id="6"),
            subject(user_id="999")]


def build(url: str, reviews: list[tuple[int, int]] = ()) -> sa.Engine:  # type: ignore[assignment]
    """users / orders / order_items as test_sql's world, with an unlisted `reviews` table referring to users."""
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    users = sa.Table("users", metadata, key(), sa.Column("email", sa.String(100)), mysql_engine="InnoDB")
    orders = sa.Table("orders", metadata, key(), sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
                      sa.Column("email", sa.String(100)), sa.Column("shipping_address", sa.String(100)),
                      mysql_engine="InnoDB")
    items = sa.Table("order_items", metadata, key(), sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id")),
                     mysql_engine="InnoDB")
    review = sa.Table("reviews", metadata, key(), sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
                      mysql_engine="InnoDB")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(users.insert(), [{"id": i, "email": e} for i, e in USERS])
        conn.execute(orders.insert(), [{"id": i, "user_id": u, "email": e, "shipping_address": f"{i} Main St"}
                                       for i, u, e in ORDERS])
        conn.execute(items.insert(), [{"id": i, "order_id": o} for i, o in ITEMS])
        if reviews:
            conn.execute(review.insert(), [{"id": i, "user_id": u} for i, u in reviews])
    return engine


@pytest.fixture
def twin_url(sql_url: str, tmp_path: Any) -> Iterator[str]:
    """A second fresh database on the same engine as sql_url."""
    backend = sa.make_url(sql_url).get_backend_name()
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/twin.db"
        return
    admin, port, name = (PG_ADMIN_URL, 5432, "PostgreSQL") if backend == "postgresql" else (
        MYSQL_ADMIN_URL, 3306, "MariaDB")
    with scratch_database(admin, port, name) as url:
        yield url


def alone_and_together(tables: list[dict[str, Any]], subjects: list[Subject], batch_url: str, alone_url: str,
                       **world: Any) -> tuple[list[Any], list[Any]]:
    """The subjects erased one by one in one world and in one batch in its twin: both outcomes, and both
    worlds' rows afterwards compared."""
    engines = [build(alone_url, **world), build(batch_url, **world)]
    with sql_connector({"name": "app-db", "kind": "sql", "url": alone_url, "tables": tables}) as sql:
        sql.use_pseudonym_key(lambda: KEY)
        one_by_one = [sql.erase(s) for s in subjects]
    with sql_connector({"name": "app-db", "kind": "sql", "url": batch_url, "tables": tables}) as sql:
        sql.use_pseudonym_key(lambda: KEY)
        together = list(sql.erase_many(subjects))
    assert dump(engines[0]) == dump(engines[1])
    for engine in engines:
        engine.dispose()
    return one_by_one, together


def test_sql_batches() -> None:
    """The sql kind shares one pass among many requests."""
    assert SqlConnector.batches is True


def test_batch_counts_and_rows_equal_erasing_alone(sql_url: str, twin_url: str) -> None:
    """Each subject's items and evidence (references followed per subject; none for a subject without rows)
    equal those of erasing it alone, and every table ends byte-identical."""
    alone, together = alone_and_together(TABLES, EVERYONE, sql_url, twin_url)
    assert together == alone
    assert [o.items_erased for o in together] == [1 + 2 + 3, 1 + 1 + 1, 1 + 1 + 1, 1, 0]


def test_subject_without_rows_gets_zero(sql_url: str) -> None:
    """A subject matching nothing gets 0 items and a 0 for every table, beside one that matches."""
    build(sql_url).dispose()
    with connector(sql_url) as sql:
        nobody, somebody = sql.erase_many([subject(user_id="999"), subject(user_id="4")])
    assert isinstance(nobody, Outcome) and isinstance(somebody, Outcome)
    assert nobody.items_erased == 0 and all(t["rows"] == 0 for t in nobody.evidence["tables"])
    assert somebody.items_erased == 3


def test_42_never_takes_420_in_a_batch(sql_url: str) -> None:
    """A batch of 42 and 4 leaves user 420, its order and its item as they were."""
    engine = build(sql_url)
    before = dump(engine)
    with connector(sql_url) as sql:
        sql.erase_many([subject(user_id="42"), subject(user_id="4"), subject(user_id=("042", "42.0", "+4"))])
    after = dump(engine)
    assert [u for u in after["users"] if u[0] in (420, 5, 6)] == [u for u in before["users"] if u[0] in (420, 5, 6)]
    assert (4, 420, "a@b.c.d", "4 Main St") in after["orders"] and (5, 4) in after["order_items"]
    engine.dispose()


def test_foreign_key_failure_fails_that_subject_only(sql_url: str, twin_url: str) -> None:
    """User 4 has a review (a table not listed) that its delete would orphan: its place holds its error,
    its rows are untouched, and the others are erased as if alone; each split is logged, without a value."""
    subjects = [subject(user_id="42"), subject(user_id="4"), subject(user_id="420")]
    engine = build(sql_url, reviews=[(1, 4)])
    before = dump(engine)
    with connector(sql_url) as sql, capture_logs() as logged:
        done = sql.erase_many(subjects)
    assert isinstance(done[1], PermanentError)
    assert "users" in str(done[1]) and "'4'" not in str(done[1])
    splits = [(e["subjects"], e["system"]) for e in logged if e["event"] == "sql.batch_split"]
    assert splits == [(3, "app-db"), (2, "app-db")]  # 3 -> 1 + 2, then 2 -> 1 + 1: user 4 failed alone
    assert all("'4'" not in e["error"] and "users" in e["error"] for e in logged if e["event"] == "sql.batch_split")
    after = dump(engine)
    assert 4 in [u[0] for u in after["users"]] and (3, 4, "xa@b.c", "3 Main St") in after["orders"]
    assert (4, 3) in after["order_items"]
    assert [u[0] for u in after["users"]] == [u[0] for u in before["users"] if u[0] not in (42, 420)]
    alone_engine = build(twin_url)
    with connector(twin_url) as sql:
        assert [done[0], done[2]] == [sql.erase(subjects[0]), sql.erase(subjects[2])]
    alone_engine.dispose()
    engine.dispose()


def test_shared_row_counted_once_for_the_first(sql_url: str) -> None:
    """Two subjects of one batch matching the same rows: the first in the batch's order counts them, the
    second counts only its own others (as erasing them one after the other would)."""
    build(sql_url).dispose()
    with connector(sql_url) as sql:
        first, second = sql.erase_many([subject(user_id="42"), subject(user_id=("42", "4"))])
    assert isinstance(first, Outcome) and isinstance(second, Outcome)
    assert (first.items_erased, second.items_erased) == (6, 3)
    assert sql.verify_many([subject(user_id="42"), subject(user_id="4")]) == [0, 0]


def test_and_of_columns_never_pairs_two_subjects(sql_url: str) -> None:
    """A `where` of two columns takes a row only if both hold one subject's values: (u1, b@) and (u2, a@) in
    a batch of (u1, a@) and (u2, b@) stay."""
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    notes = sa.Table("notes", metadata, key(), sa.Column("user_id", sa.Integer), sa.Column("email", sa.String(50)))
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(notes.insert(), [{"id": 1, "user_id": 1, "email": "a@x"}, {"id": 2, "user_id": 1, "email": "b@x"},
                                      {"id": 3, "user_id": 2, "email": "a@x"}, {"id": 4, "user_id": 2, "email": "b@x"}])
    tables = [{"name": "notes", "where": {"user_id": "user_id", "email": "email"}, "action": "delete"}]
    with connector(sql_url, tables) as sql:
        done = sql.erase_many([subject(user_id="1", email="a@x"), subject(user_id="2", email="b@x")])
        assert [o.items_erased for o in done] == [1, 1]  # type: ignore[union-attr]
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.select(notes).order_by(notes.c.id))] == [(2, 1, "b@x"), (3, 2, "a@x")]
    engine.dispose()


def test_folded_text_in_a_batch(sql_url: str) -> None:
    """Emails folded lower, several subjects at once: each takes its own, in any case, and no longer one."""
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    people = sa.Table("people", metadata, key(), sa.Column("email", sa.String(50)), mysql_engine="InnoDB")
    metadata.create_all(engine)
    stored = ["A@B.C", "a@b.c", "a@b.c.d", "X@y.Z", "xa@b.c", "İ@x.io"]
    with engine.begin() as conn:
        conn.execute(people.insert(), [{"id": i, "email": e} for i, e in enumerate(stored)])
    tables = [{"name": "people", "where": {"email": "email"}, "action": "delete"}]
    raw = {"name": "app-db", "kind": "sql", "url": sql_url, "tables": tables}
    with sql_connector(raw, {"user_id": (), "email": ("lower",)}) as sql:
        done = sql.erase_many([Subject({"email": ("a@b.c",)}), Subject({"email": ("x@y.z",)}),
                               Subject({"email": ("i@x.io",)}), Subject({"email": ("i\u0307@x.io",)})])
    assert [o.items_erased for o in done] == [2, 1, 0, 1]  # type: ignore[union-attr]
    with engine.connect() as conn:
        assert sorted(r[0] for r in conn.execute(sa.select(people.c.email))) == ["a@b.c.d", "xa@b.c"]
    engine.dispose()


def test_retention_masks_and_unreferenced_as_alone(sql_url: str, twin_url: str) -> None:
    """A retained table, a masked anonymize and a delete_unreferenced give each subject of a batch what
    erasing it alone gives, and the same rows."""
    tables = [
        {"name": "users", "where": {"id": "user_id"}, "action": "delete_unreferenced", "set": {"email": "null"}},
        {"name": "orders", "where": {"user_id": "user_id"}, "action": "anonymize",
         "set": {"email": {"hash": True}, "shipping_address": ""}},
        {"name": "order_items", "where": {"order_id": "orders.id"}, "action": "delete",
         "retain": {"reason": "tax law"}},
    ]
    alone, together = alone_and_together(tables, EVERYONE, sql_url, twin_url)
    assert together == alone
    assert together[0].exempt_reason and "3 rows kept" in together[0].exempt_reason


def test_verify_many_counts_each_as_verify(sql_url: str) -> None:
    """verify_many gives each subject what verify gives it, before and after a batch (a shared row left
    counts for each subject that matches it)."""
    build(sql_url).dispose()
    subjects = [*EVERYONE, subject(user_id=("42", "4"))]
    with connector(sql_url) as sql:
        assert sql.verify_many(subjects) == [sql.verify(s) for s in subjects] == [6, 3, 3, 1, 0, 9]
        sql.erase_many(subjects[:2])
        assert sql.verify_many(subjects) == [0, 0, 3, 1, 0, 0]


def test_char_column_settles_subject_by_subject(sql_url: str) -> None:
    """A CHAR(n) column compared as stored, which PostgreSQL reads back padded (Python cannot tell its owners),
    is still erased and verified right: the batch is done again subject by subject, and says so in the log."""
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    codes = sa.Table("codes", metadata, key(), sa.Column("email", sa.CHAR(12)), mysql_engine="InnoDB")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(codes.insert(), [{"id": 1, "email": "a@b.c"}, {"id": 2, "email": "a@b.cd"},
                                      {"id": 3, "email": "x@y.z"}])
    tables = [{"name": "codes", "where": {"email": "email"}, "action": "delete", "match": "exact"}]
    with connector(sql_url, tables) as sql:
        assert sql.verify_many([subject(email="a@b.c"), subject(email="x@y.z"), subject(email="q@q.q")]) == [1, 1, 0]
        with capture_logs() as logged:
            done = sql.erase_many([subject(email="a@b.c"), subject(email="x@y.z")])
        padded = sql_url.startswith("postgresql")  # MariaDB strips a CHAR's padding on read, SQLite has none
        assert [e["subjects"] for e in logged if e["event"] == "sql.batch_alone"] == ([2] if padded else [])
        assert sql.verify_many([subject(email="a@b.c"), subject(email="x@y.z")]) == [0, 0]
    assert [o.items_erased for o in done] == [1, 1]  # type: ignore[union-attr]
    with engine.connect() as conn:
        assert [r[0] for r in conn.execute(sa.select(codes.c.id))] == [2]
    engine.dispose()


def test_one_statement_per_table_for_the_batch(sql_url: str) -> None:
    """Five subjects take one change statement per table (a keyed select where the dialect cannot read
    changed rows back), not five."""
    engine = build(sql_url)
    with connector(sql_url) as sql:
        sql.verify(EVERYONE[0])  # reflected, so that only the batch's statements are counted
        changes: list[str] = []
        sa.event.listen(sql.engine, "before_cursor_execute",
                        lambda *args: changes.append(args[2].split()[0].upper()))
        sql.erase_many(EVERYONE)
    assert changes.count("DELETE") + changes.count("UPDATE") == 3
    engine.dispose()


TRIGGERS = {  # refuse to delete user 4
    "sqlite": ["CREATE TRIGGER keep_four BEFORE DELETE ON users WHEN OLD.id = 4"
               " BEGIN SELECT RAISE(ABORT, 'kept'); END"],
    "postgresql": ["CREATE FUNCTION keep_four() RETURNS trigger AS $$ BEGIN IF OLD.id = 4 THEN RAISE EXCEPTION 'kept';"
                   " END IF; RETURN OLD; END $$ LANGUAGE plpgsql",
                   "CREATE TRIGGER keep_four BEFORE DELETE ON users FOR EACH ROW EXECUTE FUNCTION keep_four()"],
    "mysql": ["CREATE TRIGGER keep_four BEFORE DELETE ON users FOR EACH ROW BEGIN IF OLD.id = 4 THEN"
              " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'kept'; END IF; END"],
}


def test_trigger_failure_fails_that_subject_only(sql_url: str) -> None:
    """A trigger that refuses user 4's delete fails subject 4 alone; 42 and 420 are erased."""
    engine = build(sql_url)
    with engine.begin() as conn:
        for statement in TRIGGERS[engine.dialect.name]:
            conn.exec_driver_sql(statement)
    with connector(sql_url) as sql:
        done = sql.erase_many([subject(user_id="42"), subject(user_id="4"), subject(user_id="420")])
    assert isinstance(done[1], ConnectorError) and "kept" in str(done[1])
    assert [o.items_erased for o in (done[0], done[2])] == [6, 3]  # type: ignore[union-attr]
    assert [u[0] for u in dump(engine)["users"]] == [4, 5, 6]
    engine.dispose()


def test_lock_timeout_fails_that_subject_only(sql_url: str) -> None:
    """A row of user 4 locked by another transaction past the lock timeout fails subject 4 alone, transiently."""
    backend = sa.make_url(sql_url).get_backend_name()
    if backend == "sqlite":
        pytest.skip("SQLite locks the whole database, never one row")
    engine = build(sql_url)
    setting = {"options": "-c lock_timeout=300"} if backend == "postgresql" else {
        "init_command": "SET innodb_lock_wait_timeout=1"}
    url = sa.make_url(sql_url).update_query_dict(setting).render_as_string(hide_password=False)
    with engine.connect() as holder:
        holder.exec_driver_sql("SELECT * FROM users WHERE id = 4 FOR UPDATE")
        with connector(url) as sql:
            done = sql.erase_many([subject(user_id="42"), subject(user_id="4"), subject(user_id="420")])
        holder.rollback()
    assert isinstance(done[1], TransientError)
    assert [o.items_erased for o in (done[0], done[2])] == [6, 3]  # type: ignore[union-attr]
    assert [u[0] for u in dump(engine)["users"]] == [4, 5, 6]
    engine.dispose()


def test_unreachable_database_fails_every_subject(tmp_path: Any) -> None:
    """An error that is no statement's (the database cannot be opened) is raised for the whole batch."""
    with connector(f"sqlite:///{tmp_path}/missing/app.db") as sql, pytest.raises(ConnectorError):
        sql.erase_many([subject(user_id="42"), subject(user_id="4")])
