"""quorum_queues = true: the queues are RabbitMQ quorum queues, a retry's countdown is delayed
inside RabbitMQ in whole seconds, poison still goes to erasure.dead; only amqp:// takes the key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import POISON, Backend, all_settled, dead_letters, fault_config, publish, stub, submit, wait_for
from worker.config import load
from worker.errors import ConfigError

pytestmark = pytest.mark.faults


def queue_types(broker_url: str) -> dict[str, str]:
    """Each queue of the broker URL's vhost and its type."""
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", broker_url.rsplit("/", 1)[1], "name", "type"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    return dict(line.split("\t") for line in listed.splitlines()[1:] if line.startswith("erasure."))


def test_quorum_queues_carry_requests_retries_and_dead_letters(tmp_path: Path, rabbitmq, start_worker):
    """On quorum queues a request whose system fails once is retried after its countdown and completes."""
    config = fault_config(tmp_path, rabbitmq, stub("vault", fail_transiently=1), {"quorum_queues": True})
    worker = start_worker(config)
    [done] = wait_for("the request", all_settled(config, [submit(config, 42)]), alive=worker)
    publish(rabbitmq.broker_url, [POISON[0][0]], quorum=True)
    [(_, headers)] = wait_for("the poison in erasure.dead", lambda: dead_letters(rabbitmq.broker_url, quorum=True),
                              alive=worker)

    assert done["status"] == "completed", done
    assert done["by_system"]["vault"]["attempts"] == 2
    assert [e["in_seconds"] for e in worker.events("system.retry_scheduled")] == [1.0]  # 0.2 s, made whole
    assert headers["x-erasure-reason"] == POISON[0][1]
    types = queue_types(rabbitmq.broker_url)
    assert types["erasure.intake"] == types["erasure.stub"] == types["erasure.dead"] == "quorum", types


def test_quorum_queues_need_rabbitmq(tmp_path: Path, embedded: Backend) -> None:
    """On any other broker the key is refused at start-up, naming it."""
    config = fault_config(tmp_path, embedded, stub("vault"), {"quorum_queues": True})
    with pytest.raises(ConfigError, match="quorum_queues: only RabbitMQ"):
        load(config)
