"""Items a system must keep for now (an Object Lock, a legal hold) leave it `exempt` with
the reason; the reconciler erases them once the lock ends, and the request stays completed."""

from __future__ import annotations

import time
from datetime import datetime

from tests.helpers import MakeRuntime, drain, stub
from worker.engine import intake, reconcile
from worker.surfaces import views


def test_locked_items_leave_the_system_exempt_and_the_request_completed(
    make_runtime: MakeRuntime,
) -> None:
    """What could be erased is; the lock's reason and recheck time are shown; the request completes."""
    rt = make_runtime(stub("vault", items=2, locked_for_seconds=60) + stub("crm"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    status = views.status(rt, request_id)
    vault = status["systems"][0]
    assert status["status"] == "completed"
    assert (vault["status"], vault["items_erased"]) == ("exempt", 2)
    assert vault["reason"].startswith("stub lock until ")
    assert reconcile.recheck_exemptions(rt) == 0  # the lock has not ended


def test_recheck_after_the_lock_erases_the_rest(make_runtime: MakeRuntime) -> None:
    """Once the lock ends, one reconcile pass erases what it kept; counts add up, evidence stays."""
    rt = make_runtime(stub("vault", items=2, locked_for_seconds=1))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    time.sleep(1.2)

    assert reconcile.recheck_exemptions(rt) == 1
    drain(rt)
    status = views.status(rt, request_id)
    vault = status["systems"][0]
    assert (status["status"], vault["status"], vault["reason"]) == ("completed", "erased", None)
    assert vault["items_erased"] == 3
    evidence = views.evidence(rt, request_id)["vault"]
    assert evidence["items"] == 1 and [e["items"] for e in evidence["earlier"]] == [2]
    assert reconcile.recheck_exemptions(rt) == 0


def test_recheck_that_fails_for_good_fails_the_request(make_runtime: MakeRuntime) -> None:
    """A completed request whose recheck fails permanently turns failed, so `retry` can act."""
    rt = make_runtime(stub("vault", locked_for_seconds=1))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    time.sleep(1.2)
    broken = rt.connector("vault")

    def refuse(subject: object) -> None:
        from worker.errors import PermanentError

        raise PermanentError("bucket gone")

    broken.erase = refuse  # type: ignore[method-assign, assignment]
    reconcile.recheck_exemptions(rt)
    drain(rt)
    status = views.status(rt, request_id)
    assert status["status"] == "failed"
    assert status["systems"][0]["error"] == "bucket gone"


def test_recheck_time_is_stored_timezone_aware(make_runtime: MakeRuntime) -> None:
    """The store keeps the lock's end as an aware UTC time the reconciler compares against."""
    from sqlalchemy import select

    from worker.store.models import SystemTask

    rt = make_runtime(stub("vault", locked_for_seconds=30))
    intake.submit(rt, {"user_id": "42"})
    drain(rt)
    with rt.transaction() as session:
        recheck = session.scalar(select(SystemTask.recheck_at))
    assert isinstance(recheck, datetime) and recheck.utcoffset() is not None
