"""Fault tests: real `erasure worker` processes against real RabbitMQ and PostgreSQL and against
the embedded default (SQLite store, SQLite broker), with the faults made for real: SIGKILL,
SIGTERM, a broker and a store restarted, a target that refuses connections, poison on the queue.
Each test has its own RabbitMQ vhost and its own PostgreSQL databases, made and dropped here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import PG_ADMIN_URL, TEST_SECRET_KEY, Backend, WorkerProcess, own_vhost, scratch_database


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so `pytest -m "not faults"` runs the rest quickly."""
    config.addinivalue_line("markers", "faults: real processes, real faults (tests/faults); -m 'not faults' skips them")


@pytest.fixture
def rabbitmq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """The production parts: a PostgreSQL store (with the key it needs) and a RabbitMQ vhost."""
    monkeypatch.setenv("ERASURE_SECRET_KEY", os.environ.get("ERASURE_SECRET_KEY") or TEST_SECRET_KEY)
    with scratch_database(PG_ADMIN_URL, 5432, "PostgreSQL") as store, own_vhost("erasure-faults") as broker:
        yield Backend("rabbitmq", store, broker)


@pytest.fixture
def embedded(tmp_path: Path) -> Backend:
    """The embedded default: a SQLite store and kombu's SQLite broker, in files."""
    return Backend("embedded", f"sqlite:///{tmp_path}/state.db", f"sqla+sqlite:///{tmp_path}/queue.db")


@pytest.fixture(params=["embedded", "rabbitmq"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each of the two."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture
def app_db() -> Iterator[str]:
    """A PostgreSQL database playing an application's: users and their orders."""
    with scratch_database(PG_ADMIN_URL, 5432, "PostgreSQL") as url:
        yield url


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes (the nth logs to worker-n.log); all killed afterwards."""
    started: list[WorkerProcess] = []

    def start(config: Path, *options: str, ready: bool = True) -> WorkerProcess:
        worker = WorkerProcess(config, tmp_path / f"worker-{len(started) + 1}.log", *options)
        started.append(worker)
        if ready:
            worker.ready()
        return worker

    yield start
    for worker in started:
        worker.kill()
