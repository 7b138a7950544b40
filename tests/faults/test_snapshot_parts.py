"""A snapshot pass spread over worker processes: twelve files, a part each, taken by two `erasure worker`
processes on one RabbitMQ and one PostgreSQL; and a worker SIGKILLed mid-part, whose part alone is
redone. Each request's counts and evidence are what one process's pass gives, counted once, and
every other user's rows are left as they were."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.helpers import Backend, WorkerProcess, all_settled, fault_config, submit, system_table, wait_for

pytestmark = pytest.mark.faults
ROWS, USERS, FIRST_USER = 60_000, 2_000, 1_000  # user_id = FIRST_USER + row % USERS, in every file
PER_USER = ROWS // USERS
FILES = [f"2026-0{1 + i // 6}/part-{i:02}.parquet" for i in range(12)]
ERASED = (1001, 1002)
ONE_AT_A_TIME = "--concurrency=1"  # a worker runs one part at a time: a kill stops exactly one


@pytest.fixture(scope="module")
def a_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gzip-compressed Parquet file whose rewrite takes a moment (gzip is slow to write)."""
    path = tmp_path_factory.mktemp("parts") / "part.parquet"
    row = pa.array(range(ROWS), type=pa.int64())
    users = pa.array([FIRST_USER + i % USERS for i in range(ROWS)], type=pa.int64())
    text = pc.binary_join_element_wise(pc.cast(pc.multiply(row, 7919), pa.string()), "an event of some length",
                                       pc.cast(row, pa.string()), "-")
    pq.write_table(pa.table({"user_id": users, "row": row, "text": text}), path, row_group_size=20_000,
                   compression="gzip")
    return path


def twelve_files(root: Path, source: Path) -> None:
    """The snapshot: twelve copies of the file in two snapshot folders."""
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / rel)


def others(path: Path) -> pa.Table:
    """The file's rows of every user not erased."""
    table = pq.read_table(path)
    return table.filter(pc.invert(pc.is_in(table["user_id"], value_set=pa.array(ERASED, pa.int64()))))


def one_process_evidence() -> dict[str, Any]:
    """What one process's pass over the twelve files records for each erased user."""
    return {"files": [{"snapshot": f"training:{rel.split('/')[0]}", "file": rel, "rows_removed": PER_USER}
                      for rel in FILES], "items": len(FILES) * PER_USER}


def parts_attempts(store_url: str) -> list[int]:
    """Each part's attempts, in order."""
    with sa.create_engine(store_url, poolclass=NullPool).connect() as conn:
        return list(conn.exec_driver_sql("SELECT attempts FROM snapshot_parts ORDER BY seq").scalars())


def erased_by_the_pass(config: Path, store_url: str, request_ids: list[str], root: Path, source: Path,
                       alive: WorkerProcess) -> None:
    """Every request completed with the one-process pass's counts and evidence; the others' rows kept."""
    done = wait_for("every request", all_settled(config, request_ids), timeout=240, alive=alive)
    for found in done:
        training = found["by_system"]["training"]
        assert (found["status"], training["status"], training["items_erased"]) == \
            ("completed", "erased", len(FILES) * PER_USER), found
    evidence = [erasure_evidence(store_url, r) for r in request_ids]
    assert evidence == [one_process_evidence()] * len(request_ids)
    kept = others(source)
    for rel in FILES:
        assert others(root / rel).equals(kept), rel
        assert not (root / rel).with_name(f".{Path(rel).name}.erasure-tmp").exists()


def erasure_evidence(store_url: str, request_id: str) -> dict[str, Any]:
    """The training system's evidence, as the store holds it."""
    with sa.create_engine(store_url, poolclass=NullPool).connect() as conn:
        return dict(conn.execute(sa.text("SELECT evidence FROM system_tasks WHERE request_id = :r"),
                                 {"r": request_id}).scalar_one())


def test_two_workers_share_a_pass_s_parts(tmp_path: Path, rabbitmq: Backend, a_file: Path,
                                          start_worker: Callable[..., WorkerProcess]) -> None:
    """Twelve parts taken by two worker processes, both at work: each request counted as one pass counts."""
    root = tmp_path / "training"
    twelve_files(root, a_file)
    config = fault_config(tmp_path, rabbitmq, system_table("training", "snapshot", location=str(root),
                                                           format="parquet", where={"user_id": "user_id"}),
                          {"snapshot_part_mb": 0})
    requests = [submit(config, user) for user in ERASED]
    workers = [start_worker(config, ONE_AT_A_TIME, ready=False) for _ in range(2)]
    for worker in workers:
        worker.ready()
    erased_by_the_pass(config, rabbitmq.store_url, requests, root, a_file, workers[0])
    assert all(worker.events("snapshot.part_claimed") for worker in workers)
    attempts = parts_attempts(rabbitmq.store_url)  # one pass, or one per request if each worker started one
    assert set(attempts) == {1} and len(attempts) in (len(FILES), len(FILES) * len(ERASED)), attempts


def test_a_worker_killed_mid_part_costs_that_part_alone(tmp_path: Path, rabbitmq: Backend, a_file: Path,
                                                        start_worker: Callable[..., WorkerProcess]) -> None:
    """SIGKILLed while it rewrites a part's file: the part is sent again once its lease lapses and is redone by
    the other worker; no other part runs twice, and nothing is counted twice or missed."""
    root = tmp_path / "training"
    twelve_files(root, a_file)
    config = fault_config(tmp_path, rabbitmq, system_table("training", "snapshot", location=str(root),
                                                           format="parquet", where={"user_id": "user_id"}),
                          {"snapshot_part_mb": 0, "lease_seconds": 10, "reconcile_seconds": 1})
    requests = [submit(config, user) for user in ERASED]
    first = start_worker(config, ONE_AT_A_TIME)
    temps = [(root / rel).with_name(f".{Path(rel).name}.erasure-tmp") for rel in FILES[3:]]
    wait_for("a part's rewrite under way", lambda: any(t.exists() for t in temps), every=0.02, alive=first)
    first.kill()
    second = start_worker(config, ONE_AT_A_TIME, "--beat")
    erased_by_the_pass(config, rabbitmq.store_url, requests, root, a_file, second)
    attempts = parts_attempts(rabbitmq.store_url)
    assert sorted(attempts) == [1] * (len(FILES) - 1) + [2], attempts
    assert second.events("snapshot.part_lease_expired")
