"""A system that says how long to wait (HTTP Retry-After, carried by TransientError.retry_after) is
retried no sooner than that, within the longest backoff; the real http kind against a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import FakeService, MakeRuntime, Reply, service_raw, system_table
from tests.helpers.http_service import start_service
from worker.engine import fanout, intake, passes


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeService]:
    running = start_service(monkeypatch)
    yield running
    running.stop()


@pytest.mark.parametrize(("asked", "waited"), [("500", 500.0), ("86400", 600.0)])
def test_the_retry_waits_as_long_as_the_system_asked(make_runtime: MakeRuntime, service: FakeService,
                                                     asked: str, waited: float) -> None:
    """429 with Retry-After 500: the retry is sent with a countdown of 500 s (the backoff alone would be
    about 1 s); a day is cut to retry_backoff_max_seconds (600), so a lease never waits it out."""
    raw = service_raw(service.url)
    rt = make_runtime(system_table(**raw), worker={"retry_backoff_seconds": 1, "retry_backoff_max_seconds": 600})
    service.script.append(Reply(429, {"Retry-After": asked}))
    request_id = intake.submit(rt, {"user_id": "7"}).request_id
    fanout.start(rt, request_id)
    rt.dispatch.sent.clear()  # type: ignore[attr-defined]
    passes.erase_system(rt, request_id, "billing", ())
    [(kind, rid, system, _, countdown, _)] = rt.dispatch.sent  # type: ignore[attr-defined]
    assert (kind, rid, system, countdown) == ("erase", request_id, "billing", waited)
