"""End to end on production parts: a real `erasure worker` process consuming RabbitMQ,
its state in PostgreSQL, erasing from MariaDB and from S3 over HTTP; requests come from the
CLI and from a plain Celery client, as support tooling in any language would send them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import AWS_ENV, erasure, json_events, resolver, system_table, write_config


def wait_settled(config: Path, request_id: str, worker: subprocess.Popen[bytes], log: Path) -> dict:  # type: ignore[type-arg]
    """Poll `erasure status --json` until the request is completed or failed."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = json.loads(erasure(config, "status", request_id, "--json", env=AWS_ENV).stdout)
        if status["status"] in ("completed", "failed"):
            return status  # type: ignore[no-any-return]
        assert worker.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"not settled: {status}\n{log.read_text()[-3000:]}")


@pytest.fixture
def production_world(tmp_path, postgres_url, mariadb_url, amqp_url, s3_client, bucket, s3_endpoint):  # type: ignore[no-untyped-def]
    """An app database on MariaDB, a bucket, and a config with the store on PostgreSQL."""
    app = sa.create_engine(mariadb_url)
    with app.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(200) NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT, "
                             "FOREIGN KEY (user_id) REFERENCES users(id))")
        conn.exec_driver_sql("INSERT INTO users VALUES (7, 'ann@example.com'), (70, 'x@example.com'), "
                             "(8, 'bo@example.com')")
        conn.exec_driver_sql("INSERT INTO orders VALUES (1, 7), (2, 7), (3, 70), (4, 8)")
    app.dispose()
    for key in ["u/7/a", "u/70/b", "u/8/c"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    systems = (
        resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email")
        + system_table("app-db", "sql", url=mariadb_url, tables=[
            {"name": "users", "where": {"id": "user_id"}, "action": "delete"},
            {"name": "orders", "where": {"user_id": "user_id"}, "action": "delete"},
        ])
        + system_table("uploads", "s3", bucket=bucket, endpoint_url=s3_endpoint, prefixes=["u/{user_id}/"])
    )
    config = write_config(tmp_path, systems, store_url=postgres_url, broker_url=amqp_url,
                          worker={"max_attempts": 2, "retry_backoff_seconds": 0.2})
    return {"config": config, "app": mariadb_url, "bucket": bucket}


@pytest.fixture
def worker_process(production_world, tmp_path):  # type: ignore[no-untyped-def]
    """`erasure worker` running as its own process; stopped with SIGTERM afterwards."""
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "worker", "--config", str(production_world["config"])],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **AWS_ENV, "ERASURE_LOG_FORMAT": "json"},
            start_new_session=True,
        )
    yield proc, log
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_cli_request_is_erased_by_a_worker_on_rabbitmq_and_postgresql(production_world, worker_process, s3_client):
    """A request submitted with the CLI is erased from MariaDB and S3 by the worker process."""
    config = production_world["config"]
    proc, log = worker_process
    done = erasure(config, "submit", "--subject", "email=Ann@Example.com", "--json", env=AWS_ENV)
    assert done.returncode == 0, done.stderr
    status = wait_settled(config, json.loads(done.stdout)["request_id"], proc, log)

    assert status["status"] == "completed", status
    assert {s["system"]: (s["status"], s["items_erased"]) for s in status["systems"]} == {
        "app-db": ("erased", 3), "uploads": ("erased", 1),
    }
    app = sa.create_engine(production_world["app"])
    with app.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM users ORDER BY id").scalars().all() == [8, 70]
        assert conn.exec_driver_sql("SELECT id FROM orders ORDER BY id").scalars().all() == [3, 4]
    app.dispose()
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=production_world["bucket"])["Contents"]}
    assert keys == {"u/70/b", "u/8/c"}


def test_celery_client_submits_and_a_malformed_message_is_dropped(production_world, worker_process, amqp_url):
    """`erasure.submit` from a plain Celery client is erased; a bad one is logged and dropped."""
    from celery import Celery

    config = production_world["config"]
    proc, log = worker_process
    client = Celery("support-tool", broker=amqp_url)
    client.conf.task_serializer = "json"
    client.send_task("erasure.submit", kwargs={"subject": {"user_id": "1 OR 1=1"}}, queue="erasure.intake")
    client.send_task("erasure.submit", kwargs={"subject": {"email": ["bo@example.com"]},
                                               "idempotency_key": "ticket-1"}, queue="erasure.intake")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = json.loads(erasure(config, "list", "--json", env=AWS_ENV).stdout)
        if found and found[0]["status"] == "completed":
            break
        time.sleep(0.5)
    client.close()

    assert len(found) == 1, found
    assert found[0]["status"] == "completed", found
    events = json_events(log.read_text())
    dropped = [e for e in events if e.get("event") == "intake.dropped"]
    assert len(dropped) == 1 and "user_id" in dropped[0]["reason"]
    assert "1 OR 1=1" not in log.read_text()
    assert proc.poll() is None


def test_worker_stops_cleanly_on_sigterm(worker_process):
    """SIGTERM makes the worker finish what it holds and exit 0."""
    proc, log = worker_process
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()[-3000:]
