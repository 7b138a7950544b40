"""Fixtures of the redis connector tests: a client on the test's own database, and its keys as DUMP bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from tests.helpers import REDIS_CLAIM


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test's own Redis database (raw bytes, as the connector sees them)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def dumped(db: redis.Redis) -> Callable[[], dict[bytes, bytes]]:
    """Every key of the database (the test's claim aside) with its DUMP: compare two calls byte for byte."""

    def dump() -> dict[bytes, bytes]:
        keys = sorted(k for k in db.scan_iter(count=1000) if k != REDIS_CLAIM.encode())
        return {key: bytes(db.dump(key)) for key in keys}  # type: ignore[arg-type]

    return dump
