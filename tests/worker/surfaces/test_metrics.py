"""The metrics the alerting rules watch, read from the store at each scrape on SQLite and PostgreSQL:
open requests due soon, systems failed for good (now, and counted ever), leases that ran out, and
the reconciler's last pass."""

from __future__ import annotations

import uuid
from datetime import timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.helpers import ListDispatch, MakeRuntime, drain, stub
from worker.engine import fanout, intake, reconcile
from worker.runtime import Runtime
from worker.store.models import Request, SystemStatus, SystemTask, utcnow
from worker.surfaces import metrics


def scrape(rt: Runtime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape of the runtime's registry, as Prometheus reads it: each sample by name and labels."""
    text = generate_latest(metrics.registry(rt)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_open_requests_due_soon_are_counted_by_window(make_runtime: MakeRuntime, store_url: str) -> None:
    """A request still open is counted in each window its deadline falls in; an overdue, a completed
    and a far one in none."""
    rt = make_runtime(stub("a"), store_url=store_url)
    now = utcnow()
    with rt.transaction() as session:
        for status, due_in in (("received", timedelta(hours=12)), ("in_progress", timedelta(days=2)),
                               ("failed", timedelta(days=5)), ("in_progress", timedelta(days=20)),
                               ("completed", timedelta(hours=2)), ("failed", -timedelta(hours=1))):
            session.add(Request(id=str(uuid.uuid4()), subject_ref="ref", status=status,
                                received_at=now - timedelta(days=25), deadline=now + due_in))
    found = scrape(rt)
    assert [found[("erasure_requests_due_soon", (("within_days", d),))] for d in ("1", "3", "7")] == [1, 2, 3]
    assert found[("erasure_requests_overdue", ())] == 1


def test_a_system_failed_for_good_is_counted_until_retried_and_ever(make_runtime: MakeRuntime,
                                                                    store_url: str) -> None:
    """A failed system is in erasure_systems_failed{system} until it is retried; every failure for good
    adds one to erasure_system_failures_total{system}; a configured system starts at 0."""
    rt = make_runtime(stub("bad", fail_permanently=True) + stub("good"), store_url=store_url)
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    found = scrape(rt)
    assert found[("erasure_systems_failed", (("system", "bad"),))] == 1
    assert found[("erasure_system_failures_total", (("system", "bad"),))] == 1
    assert found[("erasure_systems_failed", (("system", "good"),))] == 0
    assert found[("erasure_system_failures_total", (("system", "good"),))] == 0

    fanout.retry(rt, request_id)
    assert scrape(rt)[("erasure_systems_failed", (("system", "bad"),))] == 0
    drain(rt)
    found = scrape(rt)
    assert found[("erasure_systems_failed", (("system", "bad"),))] == 1
    assert found[("erasure_system_failures_total", (("system", "bad"),))] == 2


def test_the_reconciler_records_its_passes_and_the_leases_it_found_expired(make_runtime: MakeRuntime,
                                                                           store_url: str) -> None:
    """Before any pass the last run is 0; each pass sets it to its time, and adds the leases it
    found expired to erasure_leases_expired_total."""
    rt = make_runtime(stub("a"), store_url=store_url)
    assert scrape(rt)[("erasure_reconcile_last_run_timestamp_seconds", ())] == 0
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    assert isinstance(rt.dispatch, ListDispatch)
    fanout.start(rt, rt.dispatch.sent.pop(0)[1])
    rt.dispatch.sent.clear()
    with rt.transaction() as session:  # as if a worker claimed the system, then vanished
        task = session.scalars(select(SystemTask).where(SystemTask.request_id == request_id)).one()
        task.status, task.attempts, task.lease_until = SystemStatus.RUNNING, 1, utcnow() - timedelta(seconds=5)
    before = utcnow().timestamp()
    assert reconcile.reconcile(rt)["leases_expired"] == 1
    reconcile.reconcile(rt)
    found = scrape(rt)
    assert before <= found[("erasure_reconcile_last_run_timestamp_seconds", ())] <= utcnow().timestamp()
    assert found[("erasure_leases_expired_total", ())] == 1
