"""The way of one request after intake, played message by message with stub systems: every
system settles once, retries back off, failures say why, and redelivery changes nothing."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from connectors.base import Subject
from connectors.stub import StubConnector
from tests.helpers import ListDispatch, MakeRuntime, drain, json_events, resolver, stub, system_table
from worker import logs
from worker.engine import fanout, intake, passes, settle, state
from worker.engine.state import IllegalTransition, move_request, move_system
from worker.errors import NoSuchRequest, RefusedError
from worker.runtime import Runtime
from worker.store.models import AuditEvent, Request, RequestStatus, SystemStatus, SystemTask, utcnow
from worker.surfaces import views


def submitted(rt: Runtime, subject: dict[str, Any] | None = None) -> str:
    """Submit a request (user 42 unless told) and return its id; its start message is kept."""
    return intake.submit(rt, subject or {"user_id": "42"}).request_id


def systems(rt: Runtime, request_id: str) -> dict[str, dict[str, Any]]:
    """The status JSON's systems of one request, by name."""
    return {s["system"]: s for s in views.status(rt, request_id)["systems"]}


def kept(rt: Runtime) -> list[tuple[Any, ...]]:
    """The messages the runtime has sent and nobody has played yet."""
    assert isinstance(rt.dispatch, ListDispatch)
    return rt.dispatch.sent


def play_next(rt: Runtime) -> tuple[Any, ...]:
    """Play the oldest kept message alone, as one worker delivery, and return it."""
    message = kept(rt).pop(0)
    if message[0] == "start":
        fanout.start(rt, message[1])
    else:
        passes.erase_system(rt, message[1], message[2])
    return message


def set_running(rt: Runtime, request_id: str, system: str, lease_until: Any, attempts: int = 1) -> None:
    """Make one system's row look claimed by a worker, with the given lease, directly in the store."""
    with rt.transaction() as session:
        task = session.scalar(select(SystemTask).where(SystemTask.request_id == request_id,
                                                       SystemTask.system == system))
        assert task is not None
        task.status, task.attempts, task.lease_until = SystemStatus.RUNNING, attempts, lease_until


def crash_on_identifier(subject: Subject) -> None:
    """A connector bug whose exception message carries the subject's first identifier value."""
    raise KeyError(next(iter(subject.all_values())))


class TransitionRecorder:
    """Stands in for the state module's logger, keeping the name of each transition event."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def info(self, event: str, **fields: Any) -> None:
        """Keep one event name."""
        self.events.append(event)

    warning = info


def fixed(rt: Runtime, system: str, **knobs: Any) -> StubConnector:
    """Swap a system's stub connector for one whose config has the given knobs changed."""
    connector = StubConnector(dataclasses.replace(rt.connector(system).config, **knobs))
    rt._connectors[system] = connector
    return connector


# --- outcomes ---------------------------------------------------------------------------


def test_every_system_erasing_completes_the_request(make_runtime: MakeRuntime, store_url: str) -> None:
    """Each system is erased once with its item count; the request completes with a completion time."""
    rt = make_runtime(stub("a", items=2) + stub("b", items=3), store_url=store_url)
    request_id = submitted(rt)
    drain(rt)
    status = views.status(rt, request_id)
    assert status["status"] == "completed" and status["completed_at"] is not None
    found = {s["system"]: (s["status"], s["items_erased"], s["attempts"], s["error"]) for s in status["systems"]}
    assert found == {"a": ("erased", 2, 1, None), "b": ("erased", 3, 1, None)}
    assert all(s["finished_at"] for s in status["systems"])


def test_a_system_holding_nothing_is_not_found_and_the_request_completes(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """A system with no items for the subject reports not_found with 0 items; the request still completes."""
    rt = make_runtime(stub("a") + stub("empty", items=0), store_url=store_url)
    request_id = submitted(rt)
    drain(rt)
    found = systems(rt, request_id)
    assert (found["empty"]["status"], found["empty"]["items_erased"]) == ("not_found", 0)
    assert found["a"]["status"] == "erased"
    assert views.status(rt, request_id)["status"] == "completed"


def test_a_subject_already_erased_is_not_found_in_a_second_request(make_runtime: MakeRuntime) -> None:
    """A second request for a subject the systems already erased finds nothing and completes."""
    rt = make_runtime(stub("a") + stub("b"))
    first = submitted(rt)
    drain(rt)
    second = submitted(rt)
    drain(rt)
    assert {s["status"] for s in systems(rt, first).values()} == {"erased"}
    assert {(s["status"], s["items_erased"]) for s in systems(rt, second).values()} == {("not_found", 0)}
    assert views.status(rt, second)["status"] == "completed"


# --- failures ---------------------------------------------------------------------------


def test_a_transient_failure_is_retried_with_backoff_then_succeeds(make_runtime: MakeRuntime) -> None:
    """The failed attempt leaves the system pending and sends a delayed retry, which then erases it."""
    rt = make_runtime(stub("flaky", fail_transiently=1))
    request_id = submitted(rt)
    play_next(rt)  # start
    play_next(rt)  # the first attempt fails
    retry_message = kept(rt)[0]
    assert retry_message[:3] == ("erase", request_id, "flaky")
    assert retry_message[4] is not None and retry_message[4] > 0
    between = systems(rt, request_id)["flaky"]
    assert (between["status"], between["attempts"]) == ("pending", 1)
    assert "briefly unavailable" in between["error"]

    drain(rt)
    after = systems(rt, request_id)["flaky"]
    assert (after["status"], after["attempts"], after["items_erased"], after["error"]) == ("erased", 2, 1, None)
    assert views.status(rt, request_id)["status"] == "completed"


def test_transient_failures_beyond_max_attempts_fail_the_system_with_one_line(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """After max_attempts (3) the system fails for good with a one-line reason; the others still finish."""
    rt = make_runtime(stub("flaky", fail_transiently=10) + stub("steady"), store_url=store_url)
    request_id = submitted(rt)
    drain(rt)
    status = views.status(rt, request_id)
    found = systems(rt, request_id)
    flaky = found["flaky"]
    assert (flaky["status"], flaky["attempts"]) == ("failed", 3)
    assert flaky["error"].startswith("gave up after 3 attempts: ")
    assert "\n" not in flaky["error"] and "Traceback" not in flaky["error"]
    assert rt.connector("flaky").calls == 3  # type: ignore[attr-defined]
    assert found["steady"]["status"] == "erased"
    assert (status["status"], status["completed_at"]) == ("failed", None)


def test_a_permanent_failure_fails_after_one_attempt_without_retry(make_runtime: MakeRuntime) -> None:
    """A permanent error fails the system at once, sends no retry, and says why."""
    rt = make_runtime(stub("broken", fail_permanently=True) + stub("steady"))
    request_id = submitted(rt)
    drain(rt)
    broken = systems(rt, request_id)["broken"]
    assert (broken["status"], broken["attempts"], broken["error"]) == ("failed", 1, "stub broken refuses for good")
    assert rt.connector("broken").calls == 1  # type: ignore[attr-defined]
    assert views.status(rt, request_id)["status"] == "failed"


def test_the_request_waits_for_the_other_systems_before_failing(make_runtime: MakeRuntime) -> None:
    """A failed system leaves the request in progress until every other system has settled, then failed."""
    rt = make_runtime(stub("broken", fail_permanently=True) + stub("steady"))
    request_id = submitted(rt)
    play_next(rt)  # start
    play_next(rt)  # broken fails
    assert systems(rt, request_id)["broken"]["status"] == "failed"
    assert views.status(rt, request_id)["status"] == "in_progress"

    drain(rt)
    assert systems(rt, request_id)["steady"]["status"] == "erased"
    assert views.status(rt, request_id)["status"] == "failed"


def test_an_unexpected_connector_exception_fails_the_system_without_its_text(make_runtime: MakeRuntime) -> None:
    """A connector bug becomes 'internal error (KeyError)', never the exception's text; the rest goes on."""
    rt = make_runtime(stub("buggy", uses=["email"]) + stub("steady", uses=["email"]))

    rt.connector("buggy").erase = crash_on_identifier  # type: ignore[method-assign, assignment]
    request_id = submitted(rt, {"email": "bob@example.com"})
    drain(rt)
    found = systems(rt, request_id)
    assert (found["buggy"]["status"], found["buggy"]["attempts"]) == ("failed", 1)
    assert found["buggy"]["error"] == "internal error (KeyError)"
    assert "bob@example.com" not in found["buggy"]["error"]
    assert found["steady"]["status"] == "erased"
    assert views.status(rt, request_id)["status"] == "failed"


def test_a_connector_crash_is_logged_with_its_type_and_place_never_its_text(
    make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str],
) -> None:
    """The system.crashed event names the exception type and where it was raised, not its message."""
    rt = make_runtime(stub("buggy", uses=["email"]))
    rt.connector("buggy").erase = crash_on_identifier  # type: ignore[method-assign, assignment]
    logs.configure(level="INFO", fmt="json")
    try:
        submitted(rt, {"email": "bob@example.com"})
        drain(rt)
        text = capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
    events = json_events(text)
    crashed = [e for e in events if e["event"] == "system.crashed"]
    assert len(crashed) == 1 and crashed[0]["error"] == "KeyError"
    assert any("in crash_on_identifier" in frame for frame in crashed[0]["where"])
    assert "bob@example.com" not in text


# --- exactly-once effects ---------------------------------------------------------------


def test_a_redelivered_erase_message_changes_nothing(make_runtime: MakeRuntime, store_url: str) -> None:
    """Playing a settled system's erase message again neither calls the connector nor touches the row."""
    rt = make_runtime(stub("a", items=2), store_url=store_url)
    request_id = submitted(rt)
    drain(rt)
    before = views.status(rt, request_id)

    passes.erase_system(rt, request_id, "a")
    assert rt.connector("a").calls == 1  # type: ignore[attr-defined]
    assert views.status(rt, request_id) == before
    assert before["systems"][0]["attempts"] == 1 and before["systems"][0]["items_erased"] == 2
    assert kept(rt) == []


def test_the_same_erase_message_delivered_twice_erases_once(make_runtime: MakeRuntime, store_url: str) -> None:
    """Two copies of one erase message in the queue: the first claims and erases, the second does nothing."""
    rt = make_runtime(stub("a", items=2), store_url=store_url)
    request_id = submitted(rt)
    play_next(rt)  # start
    kept(rt).append(kept(rt)[0])
    assert drain(rt) == 2
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"], a["items_erased"]) == ("erased", 1, 2)
    assert rt.connector("a").calls == 1  # type: ignore[attr-defined]


def test_a_running_system_with_a_live_lease_is_not_claimed(make_runtime: MakeRuntime, store_url: str) -> None:
    """While another worker's lease holds, a second message leaves the running row alone."""
    rt = make_runtime(stub("a"), store_url=store_url)
    request_id = submitted(rt)
    play_next(rt)  # start
    kept(rt).clear()
    set_running(rt, request_id, "a", lease_until=utcnow() + timedelta(minutes=10))

    passes.erase_system(rt, request_id, "a")
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"]) == ("running", 1)
    assert rt.connector("a").calls == 0  # type: ignore[attr-defined]


def test_a_running_system_whose_lease_lapsed_is_claimed_again(make_runtime: MakeRuntime, store_url: str) -> None:
    """A row left running by a vanished worker is claimed once its lease is over, as a new attempt."""
    rt = make_runtime(stub("a"), store_url=store_url)
    request_id = submitted(rt)
    play_next(rt)  # start
    kept(rt).clear()
    set_running(rt, request_id, "a", lease_until=utcnow() - timedelta(seconds=5))

    passes.erase_system(rt, request_id, "a")
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"], a["items_erased"]) == ("erased", 2, 1)
    assert rt.connector("a").calls == 1  # type: ignore[attr-defined]
    assert views.status(rt, request_id)["status"] == "completed"


def test_a_lapsed_last_attempt_fails_the_system_instead_of_trying_once_more(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """A message redelivered after the last attempt's worker vanished never makes attempt max + 1:
    the system fails for good with one line, and the request settles."""
    rt = make_runtime(stub("a"), store_url=store_url)
    request_id = submitted(rt)
    play_next(rt)  # start
    kept(rt).clear()
    last = rt.config.worker.max_attempts
    set_running(rt, request_id, "a", lease_until=utcnow() - timedelta(seconds=5), attempts=last)

    passes.erase_system(rt, request_id, "a")
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"]) == ("failed", last)
    assert a["error"] == f"gave up after {last} attempts: attempt {last} lost: its worker's lease ran out"
    assert rt.connector("a").calls == 0  # type: ignore[attr-defined]
    assert views.status(rt, request_id)["status"] == "failed"


def test_a_redelivered_start_with_a_resolver_resolves_once_and_seals_what_it_found(
        make_runtime: MakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a resolver, resolution runs outside the request's lock, once: a start delivered twice
    asks the application database once, and the user id it found is sealed with the request and
    erased from the user_id system."""
    app = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{app}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql("INSERT INTO users VALUES (7, 'bob@example.com'), (8, 'eve@example.com')")
    engine.dispose()
    rt = make_runtime(
        resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email")
        + system_table("app-db", "sql", url=f"sqlite:///{app}",
                       tables=[{"name": "users", "where": {"id": "user_id"}, "action": "delete"}]))
    asked: list[str] = []
    real_resolve = fanout.resolve

    def counting_resolve(rt: Runtime, request_id: str, subject: Subject) -> Subject:
        asked.append(request_id)
        return real_resolve(rt, request_id, subject)

    monkeypatch.setattr(fanout, "resolve", counting_resolve)
    request_id = submitted(rt, {"email": "bob@example.com"})
    fanout.start(rt, request_id)
    with rt.transaction() as session:
        opened = rt.subject(session.get_one(Request, request_id)).to_json()
    assert opened == {"email": ["bob@example.com"], "user_id": ["7"]}
    drain(rt)  # the first start message, delivered again
    assert asked == [request_id]
    assert systems(rt, request_id)["app-db"]["items_erased"] == 1
    with sa.create_engine(f"sqlite:///{app}").connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM users").scalars().all() == [8]


def test_start_played_twice_resolves_once_and_erases_each_system_once(make_runtime: MakeRuntime,
                                                                     store_url: str) -> None:
    """A redelivered start neither resolves again nor makes any system erase or count twice."""
    rt = make_runtime(stub("a", items=2) + stub("b", items=3), store_url=store_url)
    request_id = submitted(rt)
    kept(rt).append(("start", request_id))
    drain(rt)
    fanout.start(rt, request_id)  # once more, after everything settled

    with rt.transaction() as session:
        resolved = session.scalars(select(AuditEvent.request_id).where(AuditEvent.type == "request.resolved")).all()
    assert resolved == [request_id]
    assert kept(rt) == []
    found = systems(rt, request_id)
    assert {n: (s["status"], s["attempts"], s["items_erased"]) for n, s in found.items()} == {
        "a": ("erased", 1, 2), "b": ("erased", 1, 3)}
    assert (rt.connector("a").calls, rt.connector("b").calls) == (1, 1)  # type: ignore[attr-defined]


def test_settle_moves_the_request_exactly_once(
    make_runtime: MakeRuntime, store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However often settle runs (each erase, a redelivery, a direct call), the request completes once."""
    rt = make_runtime(stub("a") + stub("b") + stub("c"), store_url=store_url)
    request_id = submitted(rt)
    transitions = TransitionRecorder()
    monkeypatch.setattr(state, "log", transitions)
    drain(rt)
    passes.erase_system(rt, request_id, "c")
    settle.settle(rt, request_id)
    assert [e for e in transitions.events if e.startswith("request.")] == ["request.in_progress", "request.completed"]
    assert transitions.events.count("system.erased") == 3


# --- retry ------------------------------------------------------------------------------


def test_retry_reruns_only_the_failed_systems_and_completes(make_runtime: MakeRuntime, store_url: str) -> None:
    """Once the fault is gone, retry erases just the failed system, with fresh attempts, and completes."""
    rt = make_runtime(stub("steady") + stub("broken", fail_permanently=True), store_url=store_url)
    request_id = submitted(rt)
    drain(rt)
    assert views.status(rt, request_id)["status"] == "failed"
    repaired = fixed(rt, "broken", fail_permanently=False)

    assert fanout.retry(rt, request_id) == ["broken"]
    assert [m[:3] for m in kept(rt)] == [("erase", request_id, "broken")]
    drain(rt)
    status = views.status(rt, request_id)
    found = systems(rt, request_id)
    assert (status["status"], status["completed_at"] is not None) == ("completed", True)
    assert (found["broken"]["status"], found["broken"]["attempts"], found["broken"]["error"]) == ("erased", 1, None)
    assert (found["steady"]["status"], found["steady"]["attempts"]) == ("erased", 1)
    assert (rt.connector("steady").calls, repaired.calls) == (1, 1)  # type: ignore[attr-defined]


def test_retry_gives_a_system_that_gave_up_its_full_attempts_again(make_runtime: MakeRuntime) -> None:
    """A system that exhausted its attempts starts again from attempt 1 on retry."""
    rt = make_runtime(stub("flaky", fail_transiently=10))
    request_id = submitted(rt)
    drain(rt)
    assert systems(rt, request_id)["flaky"]["attempts"] == 3
    fixed(rt, "flaky", fail_transiently=0)

    fanout.retry(rt, request_id)
    drain(rt)
    flaky = systems(rt, request_id)["flaky"]
    assert (flaky["status"], flaky["attempts"]) == ("erased", 1)
    assert views.status(rt, request_id)["status"] == "completed"


def test_retry_refuses_a_completed_request(make_runtime: MakeRuntime) -> None:
    """Retrying a completed request is refused and sends nothing."""
    rt = make_runtime(stub("a"))
    request_id = submitted(rt)
    drain(rt)
    with pytest.raises(RefusedError, match="completed"):
        fanout.retry(rt, request_id)
    assert kept(rt) == []
    assert views.status(rt, request_id)["status"] == "completed"


def test_retry_refuses_a_request_in_progress(make_runtime: MakeRuntime) -> None:
    """Retrying a request still in progress is refused and leaves its systems alone."""
    rt = make_runtime(stub("a"))
    request_id = submitted(rt)
    play_next(rt)  # start: a is pending, its message kept
    with pytest.raises(RefusedError, match="in_progress"):
        fanout.retry(rt, request_id)
    assert [m[:3] for m in kept(rt)] == [("erase", request_id, "a")]
    assert systems(rt, request_id)["a"]["status"] == "pending"


def test_retry_of_an_unknown_request_is_no_such_request(make_runtime: MakeRuntime) -> None:
    """Retrying an id the store does not hold raises NoSuchRequest."""
    rt = make_runtime(stub("a"))
    with pytest.raises(NoSuchRequest):
        fanout.retry(rt, "00000000-0000-0000-0000-000000000000")


# --- the state machine ------------------------------------------------------------------


@pytest.mark.parametrize(("start", "to"), [
    (SystemStatus.ERASED, SystemStatus.PENDING),
    (SystemStatus.NOT_FOUND, SystemStatus.RUNNING),
    (SystemStatus.PENDING, SystemStatus.ERASED),
    (SystemStatus.FAILED, SystemStatus.ERASED),
])
def test_an_illegal_system_move_raises_and_changes_nothing(start: SystemStatus, to: SystemStatus) -> None:
    """A system move the state machine forbids raises IllegalTransition and leaves status and fields as they were."""
    task = SystemTask(request_id="r", system="a", kind="stub", status=start, attempts=1)
    with pytest.raises(IllegalTransition, match=f"{start} -> {to}"):
        move_system(task, to, attempts=9)
    assert (task.status, task.attempts) == (start, 1)


@pytest.mark.parametrize(("start", "to"), [
    (RequestStatus.COMPLETED, RequestStatus.IN_PROGRESS),
    (RequestStatus.RECEIVED, RequestStatus.COMPLETED),
    (RequestStatus.FAILED, RequestStatus.COMPLETED),
])
def test_an_illegal_request_move_raises_and_changes_nothing(start: RequestStatus, to: RequestStatus) -> None:
    """A request move the state machine forbids raises IllegalTransition and sets no field."""
    request = Request(id="r", subject_ref="ref", status=start, completed_at=None)
    with pytest.raises(IllegalTransition, match=f"{start} -> {to}"):
        move_request(request, to, completed_at=utcnow())
    assert (request.status, request.completed_at) == (start, None)


def test_a_system_taken_out_of_the_config_fails_its_waiting_requests_saying_so(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """Requests started while a system was configured, erased by a worker whose config no longer
    has it: that system fails for good with a one-line reason, the other systems still settle."""
    before = make_runtime(stub("a") + stub("b"), store_url=store_url)
    ids = [intake.submit(before, {"user_id": str(u)}).request_id for u in (1, 2)]
    messages = list(kept(before))
    kept(before).clear()
    after = make_runtime(stub("a"), store_url=store_url)
    kept(after).extend(messages)

    drain(after)

    for request_id in ids:
        found = systems(after, request_id)
        assert (found["a"]["status"], found["b"]["status"]) == ("erased", "failed")
        assert found["b"]["error"] == "system b is not in the config"
        assert views.status(after, request_id)["status"] == "failed"
