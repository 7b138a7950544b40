"""Grouping: a pass at a system of a kind that erases one subject at a time takes along the other
requests' first attempts waiting for it (as many as it erases in about half a second, at most
`group_size`), erases each on its own, and records them all in one transaction; a start starts
the other received requests along with its own. Copies of messages whose rows were taken along
find them settled and write nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select

from connectors.stub import StubConnector
from tests.helpers import ListDispatch, MakeRuntime, at_once, drain, stub
from worker.engine import fanout, intake, passes
from worker.runtime import Runtime
from worker.store.models import AuditEvent
from worker.surfaces import views


def kept(rt: Runtime) -> list[tuple[Any, ...]]:
    """The messages the runtime has sent and nobody has played yet."""
    dispatch = rt.dispatch
    assert isinstance(dispatch, ListDispatch)
    return dispatch.sent


def connector(rt: Runtime, system: str = "a") -> StubConnector:
    """The stub system's connector, whose calls count erasures."""
    found = rt.connector(system)
    assert isinstance(found, StubConnector)
    return found


@contextmanager
def commits(rt: Runtime) -> Iterator[list[int]]:
    """Count the store transactions committed inside the block (read-only peeks commit none)."""
    counted: list[int] = []

    def count(_conn: Any) -> None:
        counted.append(1)

    event.listen(rt.engine, "commit", count)
    try:
        yield counted
    finally:
        event.remove(rt.engine, "commit", count)


def quick(rt: Runtime, system: str = "a") -> None:
    """As if this process had timed the system at a tenth of a millisecond per subject."""
    rt.pace.took(system, 0.0001, 1)


def started(rt: Runtime, users: range) -> list[str]:
    """Requests submitted and started, their erase messages kept, in order."""
    ids = [intake.submit(rt, {"user_id": str(u)}).request_id for u in users]
    while kept(rt) and kept(rt)[0][0] == "start":
        message = kept(rt).pop(0)
        fanout.start(rt, message[1])
    return ids


def statuses(rt: Runtime, ids: list[str], system: str = "a") -> list[tuple[str, int, int]]:
    """Each request's (system status, attempts, items erased)."""
    found = []
    for request_id in ids:
        (only,) = [s for s in views.status(rt, request_id)["systems"] if s["system"] == system]
        found.append((only["status"], only["attempts"], only["items_erased"]))
    return found


def test_a_start_sends_one_message_for_its_group_and_one_pass_erases_it_in_two_transactions(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """Ten requests started together: one erase message stands for all ten; its pass at a quick
    system claims all ten in one transaction and records them in one more. A copy of the message
    commits nothing."""
    rt = make_runtime(stub("a", items=2), store_url=store_url)
    quick(rt)
    ids = started(rt, range(10))
    assert kept(rt) == [("erase", ids[0], "a", "stub", None, tuple(ids[1:]))]

    message = kept(rt).pop(0)
    with commits(rt) as during_pass:
        passes.erase_system(rt, message[1], "a", message[5])
    assert len(during_pass) == 2  # the claims, then the outcomes with the requests settled
    assert statuses(rt, ids) == [("erased", 1, 2)] * 10
    assert {views.status(rt, r)["status"] for r in ids} == {"completed"}
    assert connector(rt).calls == 10  # each erased once, one at a time
    assert connector(rt).passes == [1] * 10

    with commits(rt) as during_copy:
        passes.erase_system(rt, message[1], "a", message[5])
    assert during_copy == []
    assert kept(rt) == []


def test_a_pass_takes_along_requests_waiting_without_a_message_of_their_own(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """Requests started one by one (each its own message) are taken along by the first message's
    pass; their own messages then find nothing to do."""
    rt = make_runtime(stub("a"), store_url=store_url, worker={"group_size": 1})
    ids = started(rt, range(4))
    rt.config = dataclasses.replace(rt.config, worker=dataclasses.replace(rt.config.worker, group_size=50))
    quick(rt)
    assert [m[:3] for m in kept(rt)] == [("erase", r, "a") for r in ids]

    first = kept(rt).pop(0)
    with commits(rt) as during_pass:
        passes.erase_system(rt, first[1], "a")
    assert len(during_pass) == 2
    assert statuses(rt, ids) == [("erased", 1, 1)] * 4
    with commits(rt) as during_copies:
        assert drain(rt) == 3
    assert during_copies == []


def test_a_slow_system_sends_the_rest_of_a_group_on_to_other_workers(make_runtime: MakeRuntime) -> None:
    """A group message at a system not yet timed (or slow): its pass takes its first request only and
    sends one message for the rest at once, which the next worker splits the same way."""
    rt = make_runtime(stub("a"))
    ids = started(rt, range(3))
    message = kept(rt).pop(0)

    passes.erase_system(rt, message[1], "a", message[5])

    assert [s[0] for s in statuses(rt, ids)] == ["erased", "pending", "pending"]
    assert kept(rt) == [("erase", ids[1], "a", "stub", None, (ids[2],))]
    drain(rt)
    assert statuses(rt, ids) == [("erased", 1, 1)] * 3


def test_a_group_message_whose_first_request_is_done_erases_the_rest(make_runtime: MakeRuntime) -> None:
    """The message's own request was erased by another pass: the others it names are still erased."""
    rt = make_runtime(stub("a"))
    quick(rt)
    ids = started(rt, range(3))
    message = kept(rt).pop(0)
    passes.erase_system(rt, ids[0], "a")  # as a re-sent message for the first alone would
    assert [s[0] for s in statuses(rt, ids)] == ["erased", "erased", "erased"]  # took the others along

    ids = started(rt, range(3, 6))
    message = kept(rt).pop(0)
    rt.config = dataclasses.replace(rt.config, worker=dataclasses.replace(rt.config.worker, group_size=1))
    passes.erase_system(rt, ids[0], "a")
    rt.config = dataclasses.replace(rt.config, worker=dataclasses.replace(rt.config.worker, group_size=50))
    assert [s[0] for s in statuses(rt, ids)] == ["erased", "pending", "pending"]

    passes.erase_system(rt, message[1], "a", message[5])

    assert statuses(rt, ids) == [("erased", 1, 1)] * 3
    assert connector(rt).calls == 6


def test_a_group_message_does_not_take_a_retry_before_its_backoff(make_runtime: MakeRuntime) -> None:
    """A request the message names whose first attempt failed keeps its own backoff and its own message."""
    rt = make_runtime(stub("a", fail_transiently=1))
    quick(rt)
    ids = started(rt, range(2))
    message = kept(rt).pop(0)
    rt.config = dataclasses.replace(rt.config, worker=dataclasses.replace(rt.config.worker, group_size=1))
    passes.erase_system(rt, ids[1], "a")  # its first attempt fails
    assert statuses(rt, ids)[1] == ("pending", 1, None)
    retry = kept(rt).pop(0)
    rt.config = dataclasses.replace(rt.config, worker=dataclasses.replace(rt.config.worker, group_size=50))

    passes.erase_system(rt, message[1], "a", message[5])

    assert statuses(rt, ids) == [("erased", 1, 1), ("pending", 1, None)]
    passes.erase_system(rt, retry[1], "a")
    assert statuses(rt, ids)[1] == ("erased", 2, 1)


def test_one_failure_in_a_pass_fails_that_request_alone(make_runtime: MakeRuntime, store_url: str) -> None:
    """A request whose erasure fails in a shared pass is retried on its own backoff; the others in the
    pass settle at their first attempt."""
    rt = make_runtime(stub("a", fail_transiently=1), store_url=store_url)  # the first call of the pass fails
    quick(rt)
    ids = started(rt, range(3))

    drain(rt)

    assert statuses(rt, ids) == [("erased", 2, 1), ("erased", 1, 1), ("erased", 1, 1)]


def test_a_pass_takes_along_first_attempts_only(make_runtime: MakeRuntime, store_url: str) -> None:
    """A system waiting for its retry is not taken along: it keeps its backoff."""
    rt = make_runtime(stub("a", fail_transiently=1), store_url=store_url)
    quick(rt)
    failing, = started(rt, range(1))
    passes.erase_system(rt, failing, "a")
    assert statuses(rt, [failing]) == [("pending", 1, None)]
    kept(rt).clear()  # its retry, sent with a countdown

    later = started(rt, range(1, 4))
    passes.erase_system(rt, later[0], "a")

    assert statuses(rt, later) == [("erased", 1, 1)] * 3
    assert statuses(rt, [failing]) == [("pending", 1, None)]


def test_group_size_one_takes_nobody_along(make_runtime: MakeRuntime) -> None:
    """With group_size = 1 each message erases its own request only, and each start starts its own."""
    rt = make_runtime(stub("a"), worker={"group_size": 1})
    quick(rt)
    ids = [intake.submit(rt, {"user_id": str(u)}).request_id for u in range(3)]
    fanout.start(rt, kept(rt).pop(0)[1])
    assert [views.status(rt, r)["status"] for r in ids] == ["in_progress", "received", "received"]

    drain(rt)
    passes.erase_system(rt, ids[0], "a")  # played again: nothing left to do
    assert connector(rt).calls == 3


def test_a_slow_system_takes_nobody_along(make_runtime: MakeRuntime) -> None:
    """A system that takes longer per subject than a pass should last erases one request per pass,
    so that other workers erase the rest side by side; one not yet timed too."""
    rt = make_runtime(stub("a", delay_seconds=0.6))
    timed, = started(rt, range(1))
    passes.erase_system(rt, timed, "a")  # now the process knows: 0.6 s per subject
    kept(rt).clear()
    ids = started(rt, range(1, 3))

    passes.erase_system(rt, ids[0], "a")

    assert [s[0] for s in statuses(rt, ids)] == ["erased", "pending"]


def test_a_start_starts_the_received_requests_along_and_their_own_starts_send_nothing(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """Three received requests: the first start message starts all three and sends one erase message
    per system for the three; the other two start messages send nothing."""
    rt = make_runtime(stub("a") + stub("b"), store_url=store_url)
    ids = [intake.submit(rt, {"user_id": str(u)}).request_id for u in range(3)]
    starts = [kept(rt).pop(0) for _ in ids]

    with commits(rt) as during_start:
        fanout.start(rt, starts[0][1])
    assert len(during_start) == 1
    assert {views.status(rt, r)["status"] for r in ids} == {"in_progress"}
    assert kept(rt) == [("erase", ids[0], s, "stub", None, tuple(ids[1:])) for s in "ab"]

    kept(rt).clear()
    for message in starts[1:]:
        fanout.start(rt, message[1])
    assert kept(rt) == []


def test_a_redelivered_start_sends_the_pending_systems_again(make_runtime: MakeRuntime) -> None:
    """A start message delivered again (its first worker may have died before sending) sends the
    erase messages of the systems still pending; a first delivery that finds the request started
    by another start sends none."""
    rt = make_runtime(stub("a") + stub("b"))
    request_id, = started(rt, range(1))
    kept(rt).clear()

    fanout.start(rt, request_id)
    assert kept(rt) == []
    fanout.start(rt, request_id, redelivered=True)
    assert sorted(m[:3] for m in kept(rt)) == [("erase", request_id, "a"), ("erase", request_id, "b")]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_two_workers_playing_every_message_at_once_erase_each_system_once(
    make_runtime: MakeRuntime, store_url: str,
) -> None:
    """Two processes' passes over the same forty requests at the same moment: each request is claimed
    by one pass (rows another holds are skipped), erased once, at its first attempt."""
    rt = make_runtime(stub("a"), store_url=store_url)
    other = make_runtime(stub("a"), store_url=store_url)
    quick(rt)
    quick(other)
    ids = started(rt, range(40))
    messages = ids  # as if each had a message of its own (re-sent, say): every pass contends for the rest
    kept(rt).clear()
    def play(runtime: Runtime, order: list[str]) -> None:
        for request_id in order:
            passes.erase_system(runtime, request_id, "a")

    assert at_once(lambda: play(rt, messages), lambda: play(other, messages[::-1])) == []
    assert statuses(rt, ids) == [("erased", 1, 1)] * 40
    assert connector(rt).calls + connector(other).calls == 40


def test_a_pass_that_runs_long_puts_back_what_it_had_no_time_for(make_runtime: MakeRuntime) -> None:
    """A system that slows down after it was timed quick: the pass stops taking the next request
    once a quarter of the lease has gone (here 1.25 s at 0.3 s each), and the rest go back to
    pending, their attempt not counted, with one message for them all; every request then completes once."""
    rt = make_runtime(stub("a", delay_seconds=0.3), worker={"lease_seconds": 5})
    quick(rt)
    ids = started(rt, range(8))
    first = kept(rt).pop(0)
    kept(rt).clear()

    passes.erase_system(rt, first[1], "a")

    found = statuses(rt, ids)
    erased = [i for i, (status, _, _) in zip(ids, found, strict=True) if status == "erased"]
    assert 1 < len(erased) < len(ids)
    assert found[len(erased):] == [("pending", 0, None)] * (len(ids) - len(erased))
    left = ids[len(erased):]
    assert kept(rt) == [("erase", left[0], "a", "stub", None, tuple(left[1:]))]
    drain(rt)
    assert statuses(rt, ids) == [("erased", 1, 1)] * len(ids)
    assert connector(rt).calls == len(ids)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_two_starts_at_once_start_each_request_once(make_runtime: MakeRuntime, store_url: str) -> None:
    """Two processes play forty start messages at the same moment, in opposite orders: each request
    is started once (one `request.resolved` event), and the erase messages they send between them
    stand for every request, each once."""
    rt = make_runtime(stub("a"), store_url=store_url, worker={"group_size": 7})
    other = make_runtime(stub("a"), store_url=store_url, worker={"group_size": 7})
    ids = [intake.submit(rt, {"user_id": str(u)}).request_id for u in range(40)]
    kept(rt).clear()
    def play(runtime: Runtime, order: list[str]) -> None:
        for request_id in order:
            fanout.start(runtime, request_id)

    assert at_once(lambda: play(rt, ids), lambda: play(other, ids[::-1])) == []
    with rt.transaction() as session:
        resolved = session.scalars(select(AuditEvent.request_id).where(AuditEvent.type == "request.resolved")).all()
    assert sorted(resolved) == sorted(ids)
    named = [r for m in kept(rt) + kept(other) for r in (m[1], *m[5])]
    assert sorted(named) == sorted(ids)
    assert all(len(m[5]) < 7 for m in kept(rt) + kept(other))  # a group is at most group_size


def test_a_message_stands_for_the_requests_it_names_exactly_and_started_only(make_runtime: MakeRuntime) -> None:
    """`also` matches request ids exactly, and only started requests: an empty string, a wildcard, an
    id's prefix, an injected condition, or a request not yet started, erase nothing more."""
    rt = make_runtime(stub("a"))
    quick(rt)
    first, = started(rt, range(1))
    kept(rt).clear()
    unstarted = intake.submit(rt, {"user_id": "2"}).request_id

    passes.erase_system(rt, first, "a", ["", "%", "*", first[:8], f"{first}' OR '1'='1", unstarted])

    assert statuses(rt, [first, unstarted]) == [("erased", 1, 1), ("pending", 0, None)]
    assert views.status(rt, unstarted)["status"] == "received"
    assert connector(rt).calls == 1
