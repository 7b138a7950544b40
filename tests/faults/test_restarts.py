"""The broker, then the store, restarted for real while requests are in flight: once each is back
every request completes, none is lost, and the worker goes on without being restarted. These stop
the machine's RabbitMQ and PostgreSQL for a moment (every client of theirs sees it) and always
bring them back."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.helpers import all_settled, fault_config, rabbitmqctl, stub, submit, wait_for

pytestmark = pytest.mark.faults
SYSTEMS = stub("vault", delay_seconds=1.5) + stub("archive", delay_seconds=1.5)


def succeeds(*command: str) -> bool:
    """Whether the command exits 0."""
    return subprocess.run(command, capture_output=True, timeout=60).returncode == 0


@contextmanager
def rabbitmq_down() -> Iterator[None]:
    """RabbitMQ's application stopped (durable queues kept on disk), started again on leaving."""
    rabbitmqctl("stop_app")
    try:
        yield
    finally:
        rabbitmqctl("start_app")
        wait_for("RabbitMQ to listen", lambda: succeeds("rabbitmq-diagnostics", "-q", "check_port_listener", "5672"))


@contextmanager
def postgresql_down() -> Iterator[None]:
    """PostgreSQL stopped (fast mode: every session is cut), started again on leaving."""
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    subprocess.run([*cluster, "stop"], check=True, capture_output=True, timeout=120)
    try:
        yield
    finally:
        subprocess.run([*cluster, "start"], capture_output=True, timeout=120)
        wait_for("PostgreSQL to accept connections", lambda: succeeds("pg_isready", "-q", "-h", "127.0.0.1"))


def in_flight(store_url: str) -> bool:
    """Whether some system is being erased while others still wait (read from the store)."""
    engine = sa.create_engine(store_url, poolclass=NullPool)
    with engine.connect() as conn:
        found = set(conn.exec_driver_sql("SELECT status FROM system_tasks").scalars())
    return {"running", "pending"} <= found


@pytest.fixture
def can_restart() -> None:
    """Skip where the services cannot be restarted from here."""
    for tool in ("rabbitmqctl", "rabbitmq-diagnostics", "pg_ctlcluster", "pg_isready"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not here: the services cannot be restarted by this test")


def test_rabbitmq_restart_loses_nothing(tmp_path: Path, rabbitmq, start_worker, can_restart):
    """Requests in flight when RabbitMQ stops all complete once it is back; a new one does too."""
    config = fault_config(tmp_path, rabbitmq, SYSTEMS)
    requests = [submit(config, user) for user in range(1, 7)]  # queued before the worker starts
    worker = start_worker(config)
    wait_for("erasures in flight", lambda: in_flight(rabbitmq.store_url), every=0.1, alive=worker)
    with rabbitmq_down():
        time.sleep(3)  # the running erasures finish and record while the broker is away

    requests.append(submit(config, 99))
    done = wait_for("every request", all_settled(config, requests), timeout=150, alive=worker)
    assert [s["status"] for s in done] == ["completed"] * len(requests), done
    assert all(s["items_erased"] == 1 for r in done for s in r["systems"]), done


def test_postgresql_restart_loses_nothing(tmp_path: Path, rabbitmq, start_worker, can_restart):
    """Requests in flight when PostgreSQL stops all complete once it is back."""
    config = fault_config(tmp_path, rabbitmq, SYSTEMS, {"lease_seconds": 10, "reconcile_seconds": 1})
    requests = [submit(config, user) for user in range(1, 7)]  # queued before the worker starts
    worker = start_worker(config, "--beat")
    wait_for("erasures in flight", lambda: in_flight(rabbitmq.store_url), every=0.1, alive=worker)
    with postgresql_down():
        time.sleep(3)  # erasures end, claims and records fail, messages are retried while the store is away

    done = wait_for("every request", all_settled(config, requests), timeout=150, alive=worker)
    assert [s["status"] for s in done] == ["completed"] * len(requests), done
    assert all(s["items_erased"] == 1 for r in done for s in r["systems"]), done  # an outcome recorded late, not lost
