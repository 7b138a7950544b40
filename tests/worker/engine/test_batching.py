"""Coalescing: requests waiting for one system of a batching kind share one erase pass,
bounded by `batch_size`, each request keeping its own counts; retries keep their backoff."""

from __future__ import annotations

import threading
import time
from typing import Any

from connectors.stub import StubConnector
from tests.helpers import NO_BATCH_WAIT, ListDispatch, MakeRuntime, drain, stub
from worker.engine import fanout, intake, passes
from worker.runtime import Runtime
from worker.surfaces import views


def pass_sizes(rt: Runtime, system: str = "snap") -> list[int]:
    """The sizes of the erase passes the stub system has seen."""
    connector = rt.connector(system)
    assert isinstance(connector, StubConnector)
    return connector.passes


def submit_all(rt: Runtime, users: list[str]) -> list[str]:
    """Submit one request per user id; returns their ids."""
    return [intake.submit(rt, {"user_id": user}).request_id for user in users]


def systems(rt: Runtime, request_id: str) -> dict[str, dict[str, Any]]:
    """The status JSON's systems of one request, by name."""
    return {s["system"]: s for s in views.status(rt, request_id)["systems"]}


def test_waiting_requests_share_one_pass(make_runtime: MakeRuntime) -> None:
    """Three requests queued for a batching system are erased in one pass, each completed with its own count."""
    rt = make_runtime(stub("snap", batches=True, items=2), worker=NO_BATCH_WAIT)
    ids = submit_all(rt, ["1", "2", "3"])

    drain(rt)

    assert pass_sizes(rt) == [3]
    for request_id in ids:
        status = views.status(rt, request_id)
        assert status["status"] == "completed"
        assert (status["systems"][0]["status"], status["systems"][0]["items_erased"]) == ("erased", 2)
        assert status["systems"][0]["attempts"] == 1


def test_a_subject_that_fails_alone_leaves_the_others_of_its_pass_erased(make_runtime: MakeRuntime) -> None:
    """A pass of three where the connector could not erase one subject: that request's system fails with
    the connector's reason, the other two are erased and completed by the same pass."""
    rt = make_runtime(stub("snap", batches=True, items=2, refuse_values=["2"]), worker=NO_BATCH_WAIT)
    ids = submit_all(rt, ["1", "2", "3"])

    drain(rt)

    assert pass_sizes(rt) == [3]
    refused = systems(rt, ids[1])["snap"]
    assert (refused["status"], refused["error"]) == ("failed", "stub snap refuses this subject")
    for request_id in (ids[0], ids[2]):
        assert views.status(rt, request_id)["status"] == "completed"
        assert (systems(rt, request_id)["snap"]["status"], systems(rt, request_id)["snap"]["items_erased"]) == \
            ("erased", 2)


def test_batch_size_bounds_a_pass(make_runtime: MakeRuntime) -> None:
    """With batch_size = 2, five waiting requests take three passes of 2, 2 and 1."""
    rt = make_runtime(stub("snap", batches=True), worker={"batch_size": 2, "batch_wait_seconds": 0})
    ids = submit_all(rt, ["1", "2", "3", "4", "5"])

    drain(rt)

    assert pass_sizes(rt) == [2, 2, 1]
    assert {views.status(rt, i)["status"] for i in ids} == {"completed"}


def test_a_kind_that_does_not_batch_erases_one_request_per_pass(make_runtime: MakeRuntime) -> None:
    """Without `batches`, each request has a pass of its own."""
    rt = make_runtime(stub("snap"), worker=NO_BATCH_WAIT)
    submit_all(rt, ["1", "2", "3"])

    drain(rt)

    assert pass_sizes(rt) == [1, 1, 1]


def test_a_failed_pass_fails_each_member_and_retries_go_alone(make_runtime: MakeRuntime) -> None:
    """A transient failure of a shared pass counts an attempt for every member; each retries on its own backoff."""
    rt = make_runtime(stub("snap", batches=True, fail_transiently=1), worker=NO_BATCH_WAIT)
    ids = submit_all(rt, ["1", "2", "3"])

    drain(rt)

    assert pass_sizes(rt) == [3, 1, 1, 1]
    for request_id in ids:
        assert systems(rt, request_id)["snap"]["status"] == "erased"
        assert systems(rt, request_id)["snap"]["attempts"] == 2


def test_only_the_same_system_joins(make_runtime: MakeRuntime) -> None:
    """Requests waiting for another system do not join a pass, and other systems still settle."""
    rt = make_runtime(stub("snap", batches=True) + stub("other", batches=True), worker=NO_BATCH_WAIT)
    ids = submit_all(rt, ["1", "2"])

    drain(rt)

    assert pass_sizes(rt, "snap") == [2]
    assert pass_sizes(rt, "other") == [2]
    assert {views.status(rt, i)["status"] for i in ids} == {"completed"}


def test_the_first_request_waits_for_others_to_join(make_runtime: MakeRuntime) -> None:
    """A request submitted while the first waits (batch_wait_seconds) joins its pass."""
    rt = make_runtime(stub("snap", batches=True), worker={"batch_wait_seconds": 3, "batch_size": 2})
    first = intake.submit(rt, {"user_id": "1"}).request_id
    fanout.start(rt, first)
    dispatch = rt.dispatch
    assert isinstance(dispatch, ListDispatch)
    dispatch.sent.clear()  # the first's erase message, played below by hand

    def late_submit() -> None:
        time.sleep(0.5)
        second = intake.submit(rt, {"user_id": "2"}).request_id
        fanout.start(rt, second)

    joiner = threading.Thread(target=late_submit)
    joiner.start()
    passes.erase_system(rt, first, "snap")  # waits until the second is pending (batch_size 2)
    joiner.join()

    assert pass_sizes(rt) == [2]
    assert {views.status(rt, r["request_id"])["status"] for r in views.listing(rt)} == {"completed"}
