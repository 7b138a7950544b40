"""The reconciler puts back on the queue what nothing else will: systems whose worker vanished,
messages that were lost, requests never started or never settled. Each step runs on SQLite and
PostgreSQL, sends each lost message once however many reconcilers run, and a copy erases nothing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.helpers import ListDispatch, MakeRuntime, Recorder, at_once, drain, stub
from worker.engine import fanout, intake, passes, reconcile, settle, state
from worker.runtime import Runtime
from worker.store.models import Lineage, ModelFlag, Request, SnapshotHit, SystemStatus, SystemTask, utcnow
from worker.surfaces import views

LONG_AGO = timedelta(hours=3)  # past every grace, lease and backoff of the test config


def kept(rt: Runtime) -> list[tuple[Any, ...]]:
    """The messages the runtime has sent and nobody has played yet."""
    assert isinstance(rt.dispatch, ListDispatch)
    return rt.dispatch.sent


def started(rt: Runtime, user: int = 42) -> str:
    """A request resolved and fanned out, whose erase messages were then lost."""
    request_id = intake.submit(rt, {"user_id": str(user)}).request_id
    fanout.start(rt, kept(rt).pop(0)[1])
    kept(rt).clear()
    return request_id


def age(rt: Runtime, request_id: str, by: timedelta = LONG_AGO) -> None:
    """Move a request's reception (and its systems' last attempt, if any) back in time."""
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        request.received_at -= by
        for task in request.systems:
            if task.started_at is not None:
                task.started_at -= by


def set_running(rt: Runtime, request_id: str, system: str, attempts: int, lease_until: datetime) -> None:
    """Make one system look claimed by a worker at the given attempt, with the given lease."""
    with rt.transaction() as session:
        task = session.scalar(select(SystemTask).where(SystemTask.request_id == request_id,
                                                       SystemTask.system == system))
        assert task is not None
        task.status, task.attempts, task.lease_until = SystemStatus.RUNNING, attempts, lease_until
        task.started_at = utcnow() - LONG_AGO


def systems(rt: Runtime, request_id: str) -> dict[str, dict[str, Any]]:
    """The status JSON's systems of one request, by name."""
    return {s["system"]: s for s in views.status(rt, request_id)["systems"]}


def erased_unsettled(rt: Runtime, monkeypatch: pytest.MonkeyPatch, user: int = 42) -> str:
    """A request whose every system settled but which was itself never settled (a worker of an older
    version vanished in between, or a path that settles in a transaction of its own)."""
    request_id = intake.submit(rt, {"user_id": str(user)}).request_id
    with monkeypatch.context() as patched:
        patched.setattr(settle, "settle_locked", lambda rt, session, requests: [])
        drain(rt)
    assert views.status(rt, request_id)["status"] == "in_progress"
    return request_id


# --- expired leases ---------------------------------------------------------------------


def test_an_expired_lease_counts_the_attempt_and_sends_the_system_again(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """A running system whose lease ran out goes back to pending with the lost attempt counted, is
    sent once, and the next attempt erases it."""
    rt = make_runtime(stub("a", items=2), store_url=store_url)
    request_id = started(rt)
    set_running(rt, request_id, "a", attempts=1, lease_until=utcnow() - timedelta(seconds=5))

    assert reconcile.reconcile(rt)["leases_expired"] == 1
    assert [m[:3] for m in kept(rt)] == [("erase", request_id, "a")]
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"], a["error"]) == ("pending", 1, "attempt 1 lost: its worker's lease ran out")
    assert reconcile.reconcile(rt)["leases_expired"] == 0
    assert len(kept(rt)) == 1

    drain(rt)
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"], a["items_erased"], a["error"]) == ("erased", 2, 2, None)
    assert views.status(rt, request_id)["status"] == "completed"


def test_an_expired_lease_on_the_last_attempt_fails_the_system_for_good(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """At max_attempts, a lost attempt fails the system with one line, sends nothing, and the same
    pass settles the request as failed."""
    rt = make_runtime(stub("a"), store_url=store_url)
    request_id = started(rt)
    set_running(rt, request_id, "a", attempts=3, lease_until=utcnow() - timedelta(seconds=5))

    done = reconcile.reconcile(rt)
    assert (done["leases_expired"], done["settled"]) == (1, 1)
    assert kept(rt) == []
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"]) == ("failed", 3)
    assert a["error"] == "gave up after 3 attempts: attempt 3 lost: its worker's lease ran out"
    assert views.status(rt, request_id)["status"] == "failed"
    assert rt.connector("a").calls == 0  # type: ignore[attr-defined]


def test_a_live_lease_is_left_alone(make_runtime: MakeRuntime, store_url: str) -> None:
    """A system running under a lease that still holds is neither moved nor sent."""
    rt = make_runtime(stub("a"), store_url=store_url)
    request_id = started(rt)
    age(rt, request_id)
    set_running(rt, request_id, "a", attempts=1, lease_until=utcnow() + timedelta(minutes=10))

    assert not any(reconcile.reconcile(rt).values())
    assert kept(rt) == []
    assert systems(rt, request_id)["a"]["status"] == "running"


def test_the_original_message_and_the_resent_one_erase_once(make_runtime: MakeRuntime, store_url: str) -> None:
    """The broker redelivers the vanished worker's message besides the reconciler's: one erases,
    the other finds the row settled."""
    rt = make_runtime(stub("a", items=2), store_url=store_url)
    request_id = started(rt)
    set_running(rt, request_id, "a", attempts=1, lease_until=utcnow() - timedelta(seconds=5))
    reconcile.reconcile(rt)
    kept(rt).append(("erase", request_id, "a", "stub", None))

    assert drain(rt) == 2
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"], a["items_erased"]) == ("erased", 2, 2)
    assert rt.connector("a").calls == 1  # type: ignore[attr-defined]


# --- lost messages ------------------------------------------------------------------------


def test_a_pending_system_whose_message_was_lost_is_sent_once(make_runtime: MakeRuntime, store_url: str) -> None:
    """Past the grace, a pending system with no attempt is sent again; the next pass, within the
    wait between re-sends, sends nothing more; the message erases it."""
    rt = make_runtime(stub("a", items=2) + stub("b"), store_url=store_url)
    request_id = started(rt)
    age(rt, request_id)

    assert reconcile.reconcile(rt)["resent"] == 2
    assert sorted(m[:3] for m in kept(rt)) == [("erase", request_id, "a"), ("erase", request_id, "b")]
    assert reconcile.reconcile(rt)["resent"] == 0
    drain(rt)
    status = views.status(rt, request_id)
    assert status["status"] == "completed"
    assert {s["system"]: s["attempts"] for s in status["systems"]} == {"a": 1, "b": 1}


def test_a_pending_system_within_the_grace_is_not_sent_again(make_runtime: MakeRuntime, store_url: str) -> None:
    """A request fanned out just now has its messages on the way: nothing is sent twice."""
    rt = make_runtime(stub("a"), store_url=store_url)
    started(rt)
    assert reconcile.reconcile(rt)["resent"] == 0
    assert kept(rt) == []


def test_a_retry_is_sent_again_only_once_its_backoff_is_long_past(make_runtime: MakeRuntime) -> None:
    """A system waiting for its retry is left alone while the retry may still come, then sent once."""
    rt = make_runtime(stub("a", fail_transiently=1), worker={"lease_seconds": 60})
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    fanout.start(rt, kept(rt).pop(0)[1])
    passes.erase_system(rt, request_id, "a")  # fails once; its delayed retry is then lost
    kept(rt).clear()
    with rt.transaction() as session:
        session.execute(update(Request).values(received_at=utcnow() - LONG_AGO))

    assert reconcile.resend_pending(rt) == 0  # the attempt started just now: its retry may come
    with rt.transaction() as session:
        session.execute(update(SystemTask).values(started_at=utcnow() - timedelta(seconds=60 + 120 + 30)))
    assert reconcile.resend_pending(rt) == 1
    drain(rt)
    a = systems(rt, request_id)["a"]
    assert (a["status"], a["attempts"]) == ("erased", 2)


def test_a_request_whose_start_was_lost_is_started_again(make_runtime: MakeRuntime, store_url: str) -> None:
    """A request still received long after intake gets its start once more, and completes."""
    rt = make_runtime(stub("a"), store_url=store_url)
    fresh = intake.submit(rt, {"user_id": "7"}).request_id
    old = intake.submit(rt, {"user_id": "42"}).request_id
    kept(rt).clear()
    age(rt, old)

    assert reconcile.reconcile(rt)["restarted"] == 1
    assert kept(rt) == [("start", old)]
    assert reconcile.reconcile(rt)["restarted"] == 0
    drain(rt)
    assert views.status(rt, old)["status"] == "completed"
    assert views.status(rt, fresh)["status"] == "completed"  # a start takes along every received request


# --- requests never settled ---------------------------------------------------------------


def test_a_request_whose_systems_all_settled_is_settled(
    make_runtime: MakeRuntime, store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker vanished between recording the last system and settling: the reconciler completes
    the request once, through the pipeline's settle."""
    rt = make_runtime(stub("a") + stub("b"), store_url=store_url)
    request_id = erased_unsettled(rt, monkeypatch)
    transitions = Recorder()
    monkeypatch.setattr(state, "log", transitions)

    assert reconcile.reconcile(rt)["settled"] == 1
    assert reconcile.reconcile(rt)["settled"] == 0
    status = views.status(rt, request_id)
    assert (status["status"], status["completed_at"] is not None) == ("completed", True)
    assert [e for e, _ in transitions.events] == ["request.completed"]


def test_settling_raises_the_flags_of_models_trained_on_the_subject(
    make_runtime: MakeRuntime, store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reconciler settles as the pipeline does: a model trained on a snapshot that held the
    subject is flagged."""
    rt = make_runtime(stub("a"), store_url=store_url)
    request_id = erased_unsettled(rt, monkeypatch)
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    with rt.transaction() as session:
        session.add(SnapshotHit(request_id=request_id, system="a", snapshot="a:2020-01-01", rows=3,
                                files=["part-0.parquet"], found_at=long_ago))
        session.add(Lineage(model="recsys", version="7", snapshot="a:2020-01-01", recorded_at=long_ago,
                            trained_at=long_ago))

    reconcile.reconcile(rt)
    with rt.transaction() as session:
        flags = [(f.model, f.version, f.request_id) for f in session.scalars(select(ModelFlag))]
    assert flags == [("recsys", "7", request_id)]
    assert views.status(rt, request_id)["flagged_models"] == [
        {"model": "recsys", "version": "7", "snapshots": ["a:2020-01-01"]}]


def test_a_request_with_a_system_failed_for_good_is_settled_failed(
    make_runtime: MakeRuntime, store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All systems settled, one failed: the reconciler fails the request, so `retry` can act."""
    rt = make_runtime(stub("a") + stub("broken", fail_permanently=True), store_url=store_url)
    request_id = erased_unsettled(rt, monkeypatch)
    assert reconcile.reconcile(rt)["settled"] == 1
    assert views.status(rt, request_id)["status"] == "failed"


# --- several reconcilers ------------------------------------------------------------------


def test_two_reconcilers_at_once_send_each_lost_message_once(
    make_runtime: MakeRuntime, store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes' reconcilers run the same pass at the same moment: each lost system and each
    lost start is sent by one of them, once; each unsettled request moves once."""
    rt = make_runtime(stub("a") + stub("b"), store_url=store_url)
    other = make_runtime(stub("a") + stub("b"), store_url=store_url)
    unsettled = [erased_unsettled(rt, monkeypatch, user) for user in range(30, 36)]  # first: a pass takes
    lost = [started(rt, user) for user in range(10)]  # along any waiting system, lost message or not
    for request_id in lost:
        age(rt, request_id)
    vanished = [started(rt, user) for user in range(10, 16)]
    for request_id in vanished:
        set_running(rt, request_id, "a", attempts=1, lease_until=utcnow() - timedelta(seconds=5))
        set_running(rt, request_id, "b", attempts=1, lease_until=utcnow() + timedelta(minutes=10))
    unstarted = [intake.submit(rt, {"user_id": str(user)}).request_id for user in range(20, 26)]
    kept(rt).clear()
    for request_id in unstarted:
        age(rt, request_id)
    transitions = Recorder()
    monkeypatch.setattr(state, "log", transitions)

    assert at_once(lambda: reconcile.reconcile(rt), lambda: reconcile.reconcile(other)) == []

    sent = Counter(m[:3] for m in kept(rt) + kept(other))
    expected = ({("erase", r, s) for r in lost for s in "ab"} | {("erase", r, "a") for r in vanished}
                | {("start", r) for r in unstarted})
    assert set(sent) == expected
    assert set(sent.values()) == {1}
    completed = [f["request_id"] for e, f in transitions.events if e == "request.completed"]
    assert sorted(completed) == sorted(unsettled)


def test_a_retried_system_is_not_sent_again_by_the_next_pass(make_runtime: MakeRuntime, store_url: str) -> None:
    """`retry` marks what it sends: the reconciler gives that message its grace instead of a copy."""
    rt = make_runtime(stub("broken", fail_permanently=True), store_url=store_url)
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    age(rt, request_id)

    assert fanout.retry(rt, request_id) == ["broken"]
    assert [m[:3] for m in kept(rt)] == [("erase", request_id, "broken")]
    assert reconcile.reconcile(rt)["resent"] == 0
    assert len(kept(rt)) == 1
