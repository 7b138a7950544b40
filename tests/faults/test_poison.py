"""Poison on erasure.intake, published raw as any client could: each message no task can run is
logged with its reason and set aside in erasure.dead as it came; a well-formed erasure.submit with
bad fields is logged and dropped; the worker goes on and the next good request completes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from tests.faults.conftest import all_settled, submit, wait_for, write_config
from tests.worker.conftest import stub

pytestmark = pytest.mark.faults
CANARY = "canary-5551"  # in every poison body: never to be seen in the log


def task(name: str, body: Any, **headers: Any) -> tuple[bytes, str, dict[str, Any]]:
    """A protocol-2 task message: JSON body, the task's name in the headers."""
    return json.dumps(body).encode(), "application/json", {"task": name, "id": str(uuid.uuid4()), **headers}


# (body, content type, headers) -> the reason logged and kept with the dead letter
DEAD = [
    ((b'{"subject": ' + CANARY.encode(), "application/json", {"task": "erasure.submit", "id": "1"}),
     "the body is not JSON"),
    ((CANARY.encode(), "text/plain", {}), "content type text/plain is not accepted (JSON only)"),
    ((b"\x80\x04\x95" + CANARY.encode(), "application/x-python-serialize", {"task": "erasure.submit", "id": "2"}),
     "content type application/x-python-serialize is not accepted (JSON only)"),
    (task("os.system", [[CANARY], {}, {}]), "unknown task os.system"),
    (task("erasure.submit", {"subject": {"user_id": CANARY}}), "the body is not [args, kwargs, options]"),
    (task("erasure.start", [[{"id": CANARY}], {}, {}]),
     "erasure.start: request_id must be a string of 1 to 300 characters"),
    (task("erasure.erase_system", [[CANARY, "vault", "extra"], {}, {}]),
     "erasure.erase_system: the arguments do not fit (request_id, system, also)"),
    (task("erasure.erase_system", [["r", "vault"], {"also": ["r2", {"id": CANARY}]}, {}]),
     "erasure.erase_system: also must be a list of at most 1000 strings of 1 to 300 characters"),
    (task("erasure.erase_system", [["r", "vault"], {"also": "r2"}, {}]),
     "erasure.erase_system: also must be a list of at most 1000 strings of 1 to 300 characters"),
    (task("erasure.submit", [[], {"subject": {"user_id": "7"}},
                             {"callbacks": [{"task": "os.system", "args": [CANARY]}]}]),
     "erasure.submit: callbacks and chains are not accepted"),
    ((json.dumps({"hello": CANARY}).encode(), "application/json", {}), "not a Celery task message (no task name)"),
]
DROPPED = [  # well formed, fields wrong: intake drops them, the reason names the field
    (task("erasure.submit", [[], {"subject": {"user_id": f"1 OR 1=1 {CANARY}"}}, {}]), "user_id"),
    (task("erasure.submit", [[], {"subject": {"user_id": "7"}, f"{CANARY}@example.com": "x"}, {}]),
     "unknown fields: (not a plain name)"),
]


def queue(name: str, quorum: bool = False) -> Queue:
    """One of the worker's queues, declared as the worker declares it (classic, or quorum on a topic exchange)."""
    exchange = Exchange("erasure", type="topic" if quorum else "direct", durable=True)
    return Queue(name, exchange, routing_key=name, durable=True,
                 queue_arguments={"x-queue-type": "quorum"} if quorum else None)


def publish(broker_url: str, messages: list[tuple[bytes, str, dict[str, Any]]], quorum: bool = False) -> None:
    """Publish raw messages to erasure.intake."""
    intake = queue("erasure.intake", quorum)
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        for body, content_type, headers in messages:
            producer.publish(body, exchange=intake.exchange, routing_key=intake.routing_key, declare=[intake],
                             content_type=content_type, content_encoding="utf-8", headers=headers)


def dead_letters(broker_url: str, quorum: bool = False) -> list[tuple[bytes, dict[str, Any]]]:
    """Everything in erasure.dead, taken off it: (body, headers)."""
    found = []
    with Connection(broker_url) as conn:
        dead = queue("erasure.dead", quorum)(conn.default_channel)
        dead.declare()
        while (message := dead.get(no_ack=True)) is not None:
            body = message.body if isinstance(message.body, bytes) else message.body.encode()
            found.append((body, message.headers))
    return found


def test_poison_is_set_aside_or_dropped_with_a_reason_and_the_worker_goes_on(tmp_path: Path, backend, start_worker):
    """Each bad message is logged with its reason, dead-lettered or dropped; then a request completes."""
    config = write_config(tmp_path, backend, stub("vault"))
    worker = start_worker(config)
    publish(backend.broker_url, [message for message, _ in DEAD + DROPPED])
    wait_for("the poison to be handled", lambda: len(worker.events("message.dead_lettered")) == len(DEAD)
             and len(worker.events("intake.dropped")) == len(DROPPED), alive=worker)
    [done] = wait_for("a good request to settle", all_settled(config, [submit(config, 42)]), alive=worker)

    assert done["status"] == "completed", done
    assert sorted(e["reason"] for e in worker.events("message.dead_lettered")) == sorted(r for _, r in DEAD)
    dropped = [e["reason"] for e in worker.events("intake.dropped")]
    assert all(any(part in reason for reason in dropped) for _, part in DROPPED), dropped
    kept: list[tuple[bytes, dict[str, Any]]] = []  # each is logged, then published: wait for the last
    wait_for("the dead letters", lambda: kept.extend(dead_letters(backend.broker_url)) or len(kept) == len(DEAD))
    assert sorted((body, headers["x-erasure-reason"]) for body, headers in kept) == \
        sorted((body, reason) for (body, _, _), reason in DEAD)
    assert all(headers["x-erasure-queue"] == "erasure.intake" for _, headers in kept)
    assert CANARY not in worker.log.read_text()
    assert worker.proc.poll() is None
