"""Fixtures for the real parts the tests talk to: PostgreSQL, MariaDB, RabbitMQ, Redis, and
moto's S3 server over a real socket. Each test gets its own database (or vhost), so runs
never see each other's data. With ERASURE_TEST_SERVICES=require (CI) a part that is down
fails the test; otherwise it is skipped, so a laptop with no servers still runs the rest.
Also the one JSON log reader every test of the logs uses."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import (
    AMQP_SERVER,
    AWS_ENV,
    MYSQL_ADMIN_URL,
    PG_ADMIN_URL,
    TEST_SECRET_KEY,
    free_port,
    json_events,
    own_redis_db,
    own_vhost,
    scratch_database,
)
from worker import logs


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    for key, value in AWS_ENV.items():
        os.environ.setdefault(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 S3 client bound to the moto server."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty bucket."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def postgres_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards, with the secret key a store there needs."""
    monkeypatch.setenv("ERASURE_SECRET_KEY", os.environ.get("ERASURE_SECRET_KEY") or TEST_SECRET_KEY)
    with scratch_database(PG_ADMIN_URL, 5432, "PostgreSQL") as url:
        yield url


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database, dropped afterwards."""
    with scratch_database(MYSQL_ADMIN_URL, 3306, "MariaDB") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path}/app.db"


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def sql_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each SQL engine the sql connector supports."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each engine the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{request.getfixturevalue('tmp_path')}/state.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of this test's own (one of db 11-14), flushed before and after."""
    with own_redis_db() as url:
        yield url


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A RabbitMQ vhost of this session's own (CI's, or one made here and deleted afterwards)."""
    given = os.environ.get("ERASURE_TEST_AMQP_URL")
    if given:
        yield given
        return
    with own_vhost("erasure-test", AMQP_SERVER) as url:
        yield url


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Logging configured for JSON lines on stderr; call the fixture to read the events so far."""
    logs.configure(level="INFO", fmt="json")
    yield lambda: json_events(capsys.readouterr().err)
    logging.getLogger().handlers.clear()
