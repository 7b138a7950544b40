"""Poison on erasure.intake, published raw as any client could: each message no task can run is
logged with its reason and set aside in erasure.dead as it came; a well-formed erasure.submit with
bad fields is logged and dropped; the worker goes on and the next good request completes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    CANARY,
    POISON,
    all_settled,
    dead_letters,
    fault_config,
    publish,
    stub,
    submit,
    task_message,
    wait_for,
)

pytestmark = pytest.mark.faults
DROPPED = [  # well formed, fields wrong: intake drops them, the reason names the field
    (task_message("erasure.submit", [[], {"subject": {"user_id": f"1 OR 1=1 {CANARY}"}}, {}]), "user_id"),
    (task_message("erasure.submit", [[], {"subject": {"user_id": "7"}, f"{CANARY}@example.com": "x"}, {}]),
     "unknown fields: (not a plain name)"),
]


def test_poison_is_set_aside_or_dropped_with_a_reason_and_the_worker_goes_on(tmp_path: Path, backend, start_worker):
    """Each bad message is logged with its reason, dead-lettered or dropped; then a request completes."""
    config = fault_config(tmp_path, backend, stub("vault"))
    worker = start_worker(config)
    publish(backend.broker_url, [message for message, _ in POISON + DROPPED])
    wait_for("the poison to be handled", lambda: len(worker.events("message.dead_lettered")) == len(POISON)
             and len(worker.events("intake.dropped")) == len(DROPPED), alive=worker)
    [done] = wait_for("a good request to settle", all_settled(config, [submit(config, 42)]), alive=worker)

    assert done["status"] == "completed", done
    assert sorted(e["reason"] for e in worker.events("message.dead_lettered")) == sorted(r for _, r in POISON)
    dropped = [e["reason"] for e in worker.events("intake.dropped")]
    assert all(any(part in reason for reason in dropped) for _, part in DROPPED), dropped
    kept: list[tuple[bytes, dict[str, Any]]] = []  # each is logged, then published: wait for the last
    wait_for("the dead letters", lambda: kept.extend(dead_letters(backend.broker_url)) or len(kept) == len(POISON))
    assert sorted((body, headers["x-erasure-reason"]) for body, headers in kept) == \
        sorted((body, reason) for (body, _, _), reason in POISON)
    assert all(headers["x-erasure-queue"] == "erasure.intake" for _, headers in kept)
    assert CANARY not in worker.log.read_text()
    assert worker.proc.poll() is None
