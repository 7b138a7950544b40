"""The Celery app pointed at a config's broker: a second config's broker gets its own connections."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import stub, write_config
from worker.config import load
from worker.queue import celery_app


def test_a_process_that_loads_a_second_config_publishes_to_its_broker(tmp_path: Path) -> None:
    """After publishing through one embedded broker, configuring another makes the producers' connections
    the new one's: a message published then goes where a worker of that config reads (before, it went to
    the first broker's queue database and was lost to the second)."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    celery_app.configure(load(write_config(first, stub("crm"))))
    before = celery_app.app.amqp.producer_pool
    assert str(first / "queue.db") in before.connections.connection.as_uri()

    celery_app.configure(load(write_config(second, stub("crm"))))

    after = celery_app.app.amqp.producer_pool
    assert after is not before
    assert str(second / "queue.db") in after.connections.connection.as_uri()
