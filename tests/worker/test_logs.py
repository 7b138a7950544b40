"""Logs for on-call engineers: JSON events with fields, never an identifier's value."""

from __future__ import annotations

import json
import logging

import pytest

from tests.helpers import MakeRuntime, drain, stub
from worker.engine import intake


def test_events_carry_request_system_and_attempt(make_runtime: MakeRuntime, json_logs) -> None:  # type: ignore[no-untyped-def]
    """A request's events are JSON objects named like system.erased, with their fields."""
    rt = make_runtime(stub("crm", uses=["email"]))
    done = intake.submit(rt, {"email": "Bob@Example.com"})
    drain(rt)
    events = json_logs()
    erased = [e for e in events if e["event"] == "system.erased"]
    assert erased and erased[0]["request_id"] == done.request_id
    assert (erased[0]["system"], erased[0]["attempt"]) == ("crm", 1)
    assert {"timestamp", "level"} <= set(erased[0])
    assert any(e["event"] == "request.completed" and e["subject_ref"] for e in events)


def test_no_identifier_value_in_any_log_line(make_runtime: MakeRuntime, json_logs,  # type: ignore[no-untyped-def]
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Neither the submitted nor the normalized value appears in the logs, even on failure."""
    rt = make_runtime(stub("crm", uses=["email"]) + stub("bad", uses=["email"], fail_permanently=True))
    intake.submit(rt, {"email": "Bob.Zanzibar@Example.com"})
    drain(rt)
    with pytest.raises(intake.InputError):
        intake.submit(rt, {"email": "Bob.Zanzibar@Example.com@x"})
    text = json.dumps(json_logs())
    assert "system.failed" in text
    assert "zanzibar" not in text.lower(), [line for line in text.split("}, {") if "zanzibar" in line.lower()]


def test_stdlib_logs_go_through_the_same_pipeline(json_logs) -> None:  # type: ignore[no-untyped-def]
    """A stdlib logger (as Celery and kombu use) comes out as a JSON event too."""
    logging.getLogger("celery.worker").warning("Connected to %s", "amqp://x")
    events = json_logs()
    assert events[-1]["event"] == "Connected to amqp://x"
    assert events[-1]["level"] == "warning" and events[-1]["logger"] == "celery.worker"
