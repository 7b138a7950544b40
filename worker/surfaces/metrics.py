"""Prometheus metrics, computed from the store at each scrape: the store is the source of truth and
is shared by every worker, so no process has to count events it may not have seen. Durations and
queue waits are quantiles over a recent window (gauges, not counters: they may go down)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from worker.engine import deadlines, reconcile
from worker.runtime import Runtime
from worker.store.models import (
    SETTLED,
    AuditEvent,
    Counter,
    GuardLook,
    Request,
    SystemStatus,
    SystemTask,
    utcnow,
)

WINDOW = timedelta(hours=1)
SAMPLE = 10_000  # at most this many recent systems are read per scrape
QUANTILES = (0.5, 0.9, 0.99, 1.0)  # 1 is the longest
DUE_WITHIN_DAYS = (1, 3, 7)  # the windows of erasure_requests_due_soon


def quantiles(seconds: Iterable[float]) -> dict[str, float]:
    """Nearest-rank quantiles of some durations, keyed by the `quantile` label's value."""
    ordered = sorted(seconds)
    return {f"{q:g}": ordered[max(0, math.ceil(q * len(ordered)) - 1)] for q in QUANTILES} if ordered else {}


class StoreCollector:
    """Reads the store when Prometheus scrapes."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        """Every metric family, from one look at the store."""
        counts = deadlines.stats(self.rt)
        now = utcnow()
        since = now - WINDOW
        with self.rt.transaction() as session:
            systems = session.execute(select(SystemTask.kind, SystemTask.status, func.count())
                                      .group_by(SystemTask.kind, SystemTask.status)).all()
            settled = session.execute(
                select(SystemTask.kind, SystemTask.started_at, SystemTask.finished_at)
                .where(SystemTask.status.in_(SETTLED), SystemTask.finished_at >= since,
                       SystemTask.started_at.is_not(None))
                .order_by(SystemTask.finished_at.desc()).limit(SAMPLE)).all()
            # a later attempt's start includes its backoff, which is no queue wait: first attempts only
            caught_rows = dict(session.execute(select(GuardLook.system, func.sum(GuardLook.rows_caught))
                                               .group_by(GuardLook.system)).all())
            catches = dict(session.execute(select(AuditEvent.system, func.count())
                                           .where(AuditEvent.type == "guard.caught")
                                           .group_by(AuditEvent.system)).all())
            started = session.execute(
                select(SystemTask.kind, SystemTask.started_at, SystemTask.queued_at, Request.received_at)
                .join(Request).where(SystemTask.started_at >= since, SystemTask.attempts == 1)
                .order_by(SystemTask.started_at.desc()).limit(SAMPLE)).all()
            watched_by_alerts = alerting(session, [s.name for s in self.rt.config.systems], now)

        requests = GaugeMetricFamily("erasure_requests", "Erasure requests by status.", labels=["status"])
        for status, n in counts["by_status"].items():
            requests.add_metric([status], n)
        yield requests
        yield GaugeMetricFamily("erasure_requests_overdue", "Requests still open past their deadline.",
                                value=counts["overdue"])

        by_system = GaugeMetricFamily("erasure_systems", "Systems of requests by status and kind.",
                                      labels=["status", "kind"])
        found = {(kind, status): n for kind, status, n in systems}
        kinds = {s.kind for s in self.rt.config.systems} | {kind for kind, _ in found}
        for kind in sorted(kinds):
            for status in SystemStatus:
                by_system.add_metric([status.value, kind], found.get((kind, status.value), 0))
        yield by_system

        rows = CounterMetricFamily("erasure_guard_caught_rows", "Rows of guarded subjects the guard's watch found "
                                   "back in snapshot folders and erased, by system.", labels=["system"])
        caught = CounterMetricFamily("erasure_guard_catches", "Snapshot folders the guard's watch caught holding "
                                     "guarded subjects (each a guard.caught event), by system.", labels=["system"])
        watched = {s.name for s in self.rt.config.systems if s.kind == "snapshot"}  # each a series from 0
        for system in sorted(watched | {str(s) for s in {*caught_rows, *catches} if s is not None}):
            rows.add_metric([system], int(caught_rows.get(system) or 0))
            caught.add_metric([system], int(catches.get(system) or 0))
        if rows.samples:  # none without a snapshot system
            yield rows
            yield caught

        yield from watched_by_alerts
        yield _by_kind("erasure_system_duration_seconds",
                       f"Seconds from an attempt's start to the system settling, over systems settled in the last "
                       f"{WINDOW.total_seconds():g} s, by kind (store times are to the second).",
                       ((kind, end - start) for kind, start, end in settled if start and end))
        yield _by_kind("erasure_queue_wait_seconds",
                       f"Seconds from a request's receipt (or a re-queue) to its system's first attempt, over first "
                       f"attempts started in the last {WINDOW.total_seconds():g} s, by kind.",
                       ((kind, start - (queued or received)) for kind, start, queued, received in started if start))


def alerting(session: Session, systems: list[str], now: datetime) -> list[Metric]:
    """What the alerting rules (deploy/prometheus/rules.yaml) watch besides the counts: open requests
    due soon, systems failed for good, leases that ran out, and the reconciler's last pass."""
    windows = [Request.deadline < now + timedelta(days=days) for days in DUE_WITHIN_DAYS]
    due = session.execute(select(*(func.sum(case((w, 1), else_=0)) for w in windows))
                          .where(Request.status.in_(deadlines.OPEN), Request.deadline >= now)).one()
    failed = dict(session.execute(select(SystemTask.system, func.count())
                                  .where(SystemTask.status == SystemStatus.FAILED).group_by(SystemTask.system)).all())
    failures = dict(session.execute(select(AuditEvent.system, func.count())
                                    .where(AuditEvent.type == "system.failed").group_by(AuditEvent.system)).all())
    counters = {name: (value, at) for name, value, at in session.execute(
        select(Counter.name, Counter.value, Counter.updated_at))}
    expired, _ = counters.get(reconcile.LEASES_EXPIRED, (0, None))
    _, last = counters.get(reconcile.PASSES, (0, None))

    due_soon = GaugeMetricFamily("erasure_requests_due_soon", "Open requests whose deadline falls within the next "
                                 "`within_days` days (not yet overdue).", labels=["within_days"])
    for days, n in zip(DUE_WITHIN_DAYS, due, strict=True):
        due_soon.add_metric([str(days)], int(n or 0))
    failed_now = GaugeMetricFamily("erasure_systems_failed", "Systems of requests failed for good and not retried or "
                                   "exempted since, by system.", labels=["system"])
    failed_ever = CounterMetricFamily("erasure_system_failures", "Systems of requests that failed for good (each a "
                                      "system.failed audit event), by system.", labels=["system"])
    for system in sorted(set(systems) | {str(s) for s in {*failed, *failures} if s is not None}):
        failed_now.add_metric([system], failed.get(system, 0))
        failed_ever.add_metric([system], failures.get(system, 0))
    leases = CounterMetricFamily("erasure_leases_expired", "Erasures whose worker vanished mid-way, their lease run "
                                 "out (found by the reconciler).", value=expired)
    last_run = GaugeMetricFamily("erasure_reconcile_last_run_timestamp_seconds", "When the reconciler last finished a "
                                 "pass (Unix time; 0 before the first).", value=last.timestamp() if last else 0)
    return [due_soon, failed_now, failed_ever, leases, last_run]


def _by_kind(name: str, documentation: str, spans: Iterable[tuple[str, timedelta]]) -> GaugeMetricFamily:
    """A gauge of quantiles by kind; a negative span (clocks of two hosts) is left out."""
    seconds: dict[str, list[float]] = defaultdict(list)
    for kind, span in spans:
        if span >= timedelta(0):
            seconds[kind].append(span.total_seconds())
    family = GaugeMetricFamily(name, documentation, labels=["kind", "quantile"])
    for kind in sorted(seconds):
        for quantile, value in quantiles(seconds[kind]).items():
            family.add_metric([kind, quantile], value)
    return family


def registry(rt: Runtime) -> CollectorRegistry:
    """A registry of this runtime's metrics alone (none of the process's defaults)."""
    made = CollectorRegistry(auto_describe=False)
    made.register(StoreCollector(rt))  # type: ignore[arg-type]
    return made

