"""Scaling out by queue: one worker process takes intake and the sql queue, another the snapshot
queue, on one RabbitMQ vhost and one PostgreSQL store. Each system's erasure runs only in the
worker that owns its kind's queue; with no snapshot worker the sql systems still finish while
the snapshot systems wait on their queue, until a snapshot worker starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.helpers import Backend, WorkerProcess, app_and_training, erasure, fault_config, stub, submit, wait_for
from worker.queue.celery_app import INTAKE_QUEUE, queue_for

pytestmark = pytest.mark.faults
# each user has a users row and ROWS_EACH rows in each snapshot; ids that no count or attempt in a log equals
USERS = range(710_001, 710_007)
ROWS_EACH = 3
SNAPSHOTS = ("2026-01", "2026-02")
SQL_WORKER = f"--queues={INTAKE_QUEUE},{queue_for('sql')}"
SNAPSHOT_WORKER = f"--queues={queue_for('snapshot')}"


@pytest.fixture
def config(tmp_path: Path, rabbitmq: Backend, app_db: str) -> Path:
    """A config with a PostgreSQL users table and a Parquet snapshot location, both holding USERS."""
    with sa.create_engine(app_db, poolclass=NullPool).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id BIGINT PRIMARY KEY)")
        conn.exec_driver_sql(f"INSERT INTO users SELECT g FROM generate_series({USERS[0]}, {USERS[-1]}) g")
    users = [user for user in USERS for _ in range(ROWS_EACH)]
    for snapshot in SNAPSHOTS:
        folder = tmp_path / "training" / snapshot
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"user_id": pa.array(users, pa.int64()), "row": pa.array(range(len(users)))}),
                       folder / "part-0.parquet")
    return fault_config(tmp_path, rabbitmq, app_and_training(app_db, tmp_path / "training", (("users", "id"),)))


def users_left(app_db: str) -> list[int]:
    """The ids still in the application's users table."""
    with sa.create_engine(app_db, poolclass=NullPool).connect() as conn:
        return list(conn.exec_driver_sql("SELECT id FROM users ORDER BY id").scalars())


def snapshot_users(config: Path) -> dict[str, list[int]]:
    """Each snapshot's distinct user ids, read from its Parquet file."""
    location = config.parent / "training"
    return {s: sorted(pc.unique(pq.read_table(location / s / "part-0.parquet")["user_id"]).to_pylist())
            for s in SNAPSHOTS}


def statuses(store_url: str) -> dict[str, set[str]]:
    """The statuses the store holds, of every request (key "request") and of each system's rows:
    read straight from the store, as polling it through the command would cost a process a look."""
    found: dict[str, set[str]] = {}
    with sa.create_engine(store_url, poolclass=NullPool).connect() as conn:
        for status in conn.exec_driver_sql("SELECT status FROM requests").scalars():
            found.setdefault("request", set()).add(status)
        for system, status in conn.exec_driver_sql("SELECT system, status FROM system_tasks"):
            found.setdefault(system, set()).add(status)
    return found


def listed(config: Path) -> dict[str, dict[str, Any]]:
    """`erasure list --json`, by request id."""
    done = erasure(config, "list", "--json")
    assert done.returncode == 0, done.stderr
    return {r["request_id"]: r for r in json.loads(done.stdout)}


def ready_messages(broker_url: str, queue: str) -> int:
    """How many messages wait in one queue of the broker URL's vhost."""
    found = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", broker_url.rsplit("/", 1)[1], "name",
                            "messages_ready"], check=True, capture_output=True, text=True, timeout=60).stdout
    return int(dict(line.split("\t") for line in found.splitlines()[1:])[queue])


def systems_run(worker: WorkerProcess) -> set[str]:
    """The systems this worker process claimed or erased, from its JSON log."""
    return {e["system"] for e in worker.events() if e["event"] in ("system.running", "system.erased")}


def test_each_kind_scales_apart_on_its_own_queue(rabbitmq: Backend, app_db: str, config: Path, start_worker):
    """With no snapshot worker, sql erasures finish while snapshot ones wait queued; a snapshot worker
    started later completes them and new requests, each worker erasing only the kind of its queue."""
    sql = start_worker(config, SQL_WORKER, ready=False)
    waiting = [submit(config, user) for user in USERS[:3]]
    sql.ready()
    wait_for("the sql erasures", lambda: statuses(rabbitmq.store_url).get("app-db") == {"erased"}, alive=sql)

    found = statuses(rabbitmq.store_url)
    assert (found["request"], found["training"]) == ({"in_progress"}, {"pending"}), found
    assert ready_messages(rabbitmq.broker_url, queue_for("snapshot")) == len(waiting)
    assert users_left(app_db) == list(USERS[3:])
    assert snapshot_users(config) == {s: list(USERS) for s in SNAPSHOTS}  # not a row touched

    snapshots = start_worker(config, SNAPSHOT_WORKER, ready=False)
    later = submit(config, USERS[3])  # sent while both run
    snapshots.ready()
    wait_for("every request", lambda: statuses(rabbitmq.store_url)["request"] == {"completed"}, alive=snapshots)

    done = listed(config)
    assert set(done) == {*waiting, later}
    for request in done.values():
        by_system = {s["system"]: (s["status"], s["items_erased"]) for s in request["systems"]}
        assert by_system == {"app-db": ("erased", 1), "training": ("erased", ROWS_EACH * len(SNAPSHOTS))}, request
    assert users_left(app_db) == list(USERS[4:])
    assert snapshot_users(config) == {s: list(USERS[4:]) for s in SNAPSHOTS}
    assert (systems_run(sql), systems_run(snapshots)) == ({"app-db"}, {"training"})
    assert {e["request_id"] for e in sql.events("request.in_progress")} == set(done)  # intake: the sql worker's
    assert not snapshots.events("request.in_progress")


def test_an_unknown_queue_is_refused_before_anything_is_made(tmp_path: Path, embedded: Backend) -> None:
    """`erasure worker --queues` naming no queue of ours exits 2 with one line naming it; no store is made."""
    config = fault_config(tmp_path, embedded, stub("vault"))
    done = erasure(config, "worker", "--queues", f"{INTAKE_QUEUE},bogus")

    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("erasure: --queues: unknown queue(s) bogus (known: "), lines
    assert not list(tmp_path.glob("state.db*")), "the store (or its key) was made for a refused command"
