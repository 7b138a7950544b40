"""SIGKILL a worker while it rewrites a large snapshot and while its SQL delete waits on a row lock,
then start another: every request completes, the data is gone, and every count is the true one
(an erasure run again after one that landed unrecorded would count nothing the second time)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.helpers import all_settled, app_and_training, fault_config, submit, wait_for

pytestmark = pytest.mark.faults
ROWS, USERS, FIRST_USER = 300_000, 5_000, 1_000  # user_id = FIRST_USER + row % USERS
PER_USER = ROWS // USERS
ORDERS_PER_USER = 10
TABLES = (("orders", "user_id"), ("users", "id"))  # children first


@pytest.fixture(scope="session")
def large_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gzip-compressed Parquet file whose rewrite takes seconds (gzip is slow to write)."""
    path = tmp_path_factory.mktemp("large") / "part-0.parquet"
    row = pa.array(range(ROWS), type=pa.int64())
    users = pa.array([FIRST_USER + i % USERS for i in range(ROWS)], type=pa.int64())
    text = pc.binary_join_element_wise(pc.cast(pc.multiply(row, 7919), pa.string()), "an event of some length",
                                       pc.cast(row, pa.string()), "-")
    pq.write_table(pa.table({"user_id": users, "row": row, "text": text}), path, row_group_size=50_000,
                   compression="gzip")
    return path


def rows_of(path: Path, user: int) -> int:
    """How many rows of one user the Parquet file holds."""
    return int(pc.sum(pc.equal(pq.read_table(path, columns=["user_id"])["user_id"], user)).as_py() or 0)


def waiting_on_a_lock(url: str) -> bool:
    """Whether a session of that database waits for a lock (the worker's DELETE)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        return bool(conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                         " AND wait_event_type = 'Lock'").scalar())


def test_a_worker_killed_mid_erasure_is_replaced_and_every_count_is_true(tmp_path: Path, backend, app_db,
                                                                         large_parquet, start_worker):
    """Killed mid-rewrite and mid-delete, nothing half-done lands; the next worker erases it all, counted once."""
    snapshot = tmp_path / "training" / "2026-01" / "part-0.parquet"
    snapshot.parent.mkdir(parents=True)
    shutil.copy(large_parquet, snapshot)
    rewriting = snapshot.with_name(f".{snapshot.name}.erasure-tmp")  # the new file, written beside the old
    app = sa.create_engine(app_db, poolclass=NullPool)
    with app.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id BIGINT PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT REFERENCES users(id))")
        conn.exec_driver_sql("INSERT INTO users SELECT g FROM generate_series(1000, 1009) g")
        conn.exec_driver_sql("INSERT INTO orders SELECT g, 1000 + mod(g, 10) "
                             f"FROM generate_series(1, {10 * ORDERS_PER_USER}) g")
    config = fault_config(tmp_path, backend, app_and_training(app_db, snapshot.parent.parent, TABLES),
                          {"lease_seconds": 10, "reconcile_seconds": 1})
    requests = {user: submit(config, user) for user in (1001, 1002)}

    with app.connect() as lock:  # user 1001's row stays locked: its DELETE waits, mid-transaction
        lock.exec_driver_sql("SELECT id FROM users WHERE id = 1001 FOR UPDATE")
        first = start_worker(config)
        wait_for("a rewrite under way and a delete waiting", lambda: rewriting.exists() and waiting_on_a_lock(app_db),
                 every=0.05, alive=first)
        first.kill()
        lock.rollback()

    # the killed rewrite never landed: a user is whole or (erased by a pass of their own that ended
    # before the kill, when the two requests did not start in time to share one) gone
    before = {user: rows_of(snapshot, user) for user in requests}
    assert set(before.values()) <= {0, PER_USER} and PER_USER in before.values(), before
    with app.connect() as conn:  # the delete was rolled back with its connection
        assert conn.exec_driver_sql("SELECT count(*) FROM orders WHERE user_id = 1001").scalar() == ORDERS_PER_USER
    second = start_worker(config, *(["--beat"] if backend.name == "rabbitmq" else []))
    done = wait_for("every request", all_settled(config, list(requests.values())), timeout=150, alive=second)

    for user, found in zip(requests, done, strict=True):
        assert found["status"] == "completed", found
        systems = found["by_system"]
        assert (systems["training"]["status"], systems["training"]["items_erased"]) == ("erased", PER_USER), found
        assert (systems["app-db"]["status"], systems["app-db"]["items_erased"]) == ("erased", ORDERS_PER_USER + 1)
        if before[user]:
            assert systems["training"]["attempts"] >= 2, found  # the killed pass held this one
    assert requests[1001] in {e["request_id"] for e in second.events("system.lease_expired")
                              if e["system"] == "app-db"}
    left = pq.read_table(snapshot, columns=["user_id"])["user_id"]
    assert len(left) == ROWS - 2 * PER_USER
    assert (rows_of(snapshot, 1001), rows_of(snapshot, 1002), rows_of(snapshot, 1003)) == (0, 0, PER_USER)
    assert not rewriting.exists()
    with app.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM users ORDER BY id").scalars().all() == \
            [1000, *range(1003, 1010)]
        assert conn.exec_driver_sql("SELECT count(*) FROM orders").scalar() == 8 * ORDERS_PER_USER
