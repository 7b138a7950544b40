"""The real parts the tests talk to: PostgreSQL, MariaDB, RabbitMQ, Redis, S3 (fixtures in tests/conftest.py)."""


from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PG_ADMIN_URL = os.environ.get("ERASURE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN_URL = os.environ.get("ERASURE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
AMQP_SERVER = os.environ.get("ERASURE_TEST_AMQP_SERVER", "amqp://guest:guest@127.0.0.1:5672")
REDIS_SERVER = os.environ.get("ERASURE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_TEST_DBS = (11, 12, 13, 14)  # the only databases the tests write to, each flushed by its holder alone
REDIS_CLAIM = "erasure-test:claim"  # the key that says which test holds a database; no test's template reaches it
# a store on a server refuses to start without a key (worker.keys); a fixed one for the tests
TEST_SECRET_KEY = "test-secret-key-0123456789abcdef-0123456789abcdef"


def service_down(name: str, url: str) -> None:
    """Skip (or, in CI, fail) a test whose real part is not reachable."""
    message = f"{name} is not reachable at {url}"
    if os.environ.get("ERASURE_TEST_SERVICES") == "require":
        pytest.fail(message)
    pytest.skip(message)


def reachable(url: str, default_port: int) -> bool:
    """Whether something listens at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def scratch_database(admin_url: str, default_port: int, name: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards (skipped or failed if the server is down)."""
    if not reachable(admin_url, default_port):
        service_down(name, admin_url)
    db = f"erasure_t_{uuid.uuid4().hex[:16]}"
    # never pooled: a session-long database outlives a PostgreSQL restart in the fault tests
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {db}")
    url = sa.make_url(admin_url).set(database=db)
    if url.get_backend_name() == "mysql":
        url = url.update_query_dict({"charset": "utf8mb4"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db}{force}")
        admin.dispose()


def rabbitmqctl(*args: str) -> None:
    """Run rabbitmqctl quietly; an error fails the test."""
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@contextmanager
def own_vhost(prefix: str, server: str | None = None) -> Iterator[str]:
    """A RabbitMQ vhost of the caller's own, on the server of ERASURE_TEST_AMQP_URL (or this
    machine's), deleted afterwards: its queues, exchanges and dead letters are nobody else's."""
    server = server or os.environ.get("ERASURE_TEST_AMQP_URL", AMQP_SERVER)
    if not reachable(server, 5672) or not shutil.which("rabbitmqctl"):
        service_down("RabbitMQ", server)
    credentials_and_host = server.split("//", 1)[1].split("/", 1)[0]
    vhost = f"{prefix}-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://{credentials_and_host}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)



def _claim_redis_db(server: str, token: str, hold_seconds: int) -> tuple[Any, int]:
    """A client on the first of REDIS_TEST_DBS whose claim key this token could set, waiting for one."""
    import redis  # only the redis tests need the library

    deadline = time.monotonic() + hold_seconds
    while True:
        for db in REDIS_TEST_DBS:
            client = redis.Redis.from_url(f"{server}/{db}")
            if client.set(REDIS_CLAIM, token, nx=True, ex=hold_seconds):
                return client, db
            client.close()
        if time.monotonic() > deadline:
            pytest.fail(f"every Redis test database {REDIS_TEST_DBS} stayed claimed for {hold_seconds}s")
        time.sleep(0.2)


@contextmanager
def own_redis_db(server: str = REDIS_SERVER, hold_seconds: int = 600) -> Iterator[str]:
    """The URL of one of REDIS_TEST_DBS, held by this test alone (a claim key in it, so concurrent
    runs wait for each other) and flushed before and after: no other database is ever touched."""
    if not reachable(server, 6379):
        service_down("Redis", server)
    token = uuid.uuid4().hex
    client, db = _claim_redis_db(server, token, hold_seconds)
    try:
        with client.pipeline(transaction=True) as pipe:  # flushed and claimed again in one step
            pipe.flushdb().set(REDIS_CLAIM, token, ex=hold_seconds).execute()
        yield f"{server}/{db}"
    finally:
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(REDIS_CLAIM)
            if pipe.get(REDIS_CLAIM) == token.encode():  # still ours: nobody else's data is flushed
                pipe.multi()
                pipe.flushdb()
                pipe.execute()
        client.close()
