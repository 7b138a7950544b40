"""Logs for on-call engineers: JSON events with fields, never an identifier's value."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

import pytest

from connectors import redact
from tests.helpers import MakeRuntime, drain, stub
from worker import logs
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


def test_a_traceback_is_a_field_scrubbed_of_known_values(json_logs) -> None:  # type: ignore[no-untyped-def]
    """A stdlib record with an exception carries the traceback as `exception`, the values known
    while it was logged masked there as in every field."""
    with redact.values(["zanzibar@example.com"]):
        try:
            raise LookupError("no row for zanzibar@example.com")
        except LookupError:
            logging.getLogger("celery.app.trace").exception("Task failed")
    (event,) = [e for e in json_logs() if e["event"] == "Task failed"]
    assert "Traceback (most recent call last)" in event["exception"]
    assert "LookupError: no row for [redacted]" in event["exception"]
    assert "zanzibar" not in json.dumps(event)


def test_the_access_log_is_fields_without_the_query_string(json_logs) -> None:  # type: ignore[no-untyped-def]
    """uvicorn's access line (its own format and arguments) becomes method, path, status and client
    fields; the query string is left out, and no other record's arguments are kept."""
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "10.0.0.7:5123", "GET",
                                             "/v1/requests?email=zanzibar@example.com", "1.1", 200)
    logging.getLogger("celery.worker").info("Task %(name)s received", {"name": "erasure.submit", "kwargs": "zanzibar"})
    access, received = json_logs()[-2:]
    assert (access["event"], access["method"], access["path"], access["status"], access["client"]) == (
        "http.request", "GET", "/v1/requests", 200, "10.0.0.7:5123")
    assert received["event"] == "Task erasure.submit received"
    assert "zanzibar" not in json.dumps([access, received])


def test_a_python_warning_is_an_event(json_logs) -> None:  # type: ignore[no-untyped-def]
    """warnings.warn comes out as the event python.warning with its category, message and place."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logs.configure(level="INFO", fmt="json")  # inside the block, which resets the hook on leaving
        warnings.warn("the broker setting is deprecated", DeprecationWarning, stacklevel=1)
    (event,) = [e for e in json_logs() if e["event"] == "python.warning"]
    assert (event["category"], event["message"], event["level"]) == (
        "DeprecationWarning", "the broker setting is deprecated", "warning")
    assert event["where"].startswith(__file__)


def test_an_uncaught_exception_is_one_json_line() -> None:
    """In a process, an exception that ends the main thread or another thread is a JSON event
    python.uncaught with its traceback as `exception`, and nothing else is written."""
    script = ("import threading\nfrom worker import logs\nlogs.configure(fmt='json')\n"
              "t = threading.Thread(target=lambda: 1 / 0, name='helper'); t.start(); t.join()\n"
              "raise ValueError('the end')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    thread, main = (json.loads(line) for line in done.stderr.splitlines())
    assert (thread["event"], thread["error"], thread["thread"]) == ("python.uncaught", "ZeroDivisionError", "helper")
    assert (main["event"], main["error"]) == ("python.uncaught", "ValueError")
    assert main["exception"].startswith("Traceback") and main["exception"].endswith("ValueError: the end")
