"""The reconciler: a periodic pass over the store that puts work back on the queue when
nothing else will, and settles what a vanished worker left unsettled.

Safe to run twice and from several processes at once: rows are taken with SELECT ... FOR
UPDATE SKIP LOCKED on PostgreSQL (SQLite runs each transaction under BEGIN IMMEDIATE, so
passes take turns), and each row is marked as re-sent in the transaction that takes it.
A message only says "look at row X": a copy finds the row claimed or settled and does nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, exists, or_, select, update

from worker.config import WorkerSettings
from worker.engine import deadlines, manual_tasks, part_passes, settle
from worker.engine.state import lose_attempt, move_system
from worker.runtime import Runtime
from worker.store.models import SETTLED, Counter, Request, RequestStatus, SystemStatus, SystemTask, utcnow

log = structlog.get_logger("erasure.reconcile")
BATCH = 500
LONGEST_WAIT = 3600.0  # between two re-sends of one row, however often it was re-sent
PASSES, LEASES_EXPIRED = "reconcile.passes", "reconcile.leases_expired"  # rows of `counters`


def grace(settings: WorkerSettings) -> float:
    """Seconds a message may sit in the queue before the reconciler takes it for lost."""
    return max(2 * settings.reconcile_seconds, 60.0)


def _waited(count: Any, since: Any, now: datetime, wait: Callable[[int], float], steps: int) -> ColumnElement[bool]:
    """Rows whose `since` is unset or at least `wait(count)` seconds ago (a count past `steps` waits
    as long as `steps`): a wait that depends on each row's count, in SQL every engine runs."""
    def before(n: int) -> datetime:
        return now - timedelta(seconds=wait(n))

    return or_(since.is_(None), *(and_(count == n, since < before(n)) for n in range(steps)),
               and_(count >= steps, since < before(steps)))


def _resend_wait(settings: WorkerSettings) -> Callable[[int], float]:
    """Wait the grace after a first re-send, then twice as long each time, so a long queue is not flooded."""
    return lambda requeues: min(grace(settings) * 2 ** requeues, LONGEST_WAIT)


def expire_leases(rt: Runtime) -> int:
    """Systems left running by a worker that vanished: the lost attempt counts; back to the queue,
    or failed for good if it was the last one. How many."""
    settings, now = rt.config.worker, utcnow()
    resend = []
    with rt.transaction() as session:
        tasks = session.scalars(
            select(SystemTask)
            .where(SystemTask.status == SystemStatus.RUNNING,
                   or_(SystemTask.lease_until.is_(None), SystemTask.lease_until < now))
            .order_by(SystemTask.id).limit(BATCH).with_for_update(skip_locked=True)
        ).all()
        for task in tasks:
            if lose_attempt(task, settings.max_attempts, now):
                task.queued_at, task.requeues = now, 0
                resend.append((task.request_id, task.system, task.kind))
    for request_id, system, kind in resend:
        rt.dispatch.erase(request_id, system, kind)
    return len(tasks)


def resend_pending(rt: Runtime) -> int:
    """Pending systems whose message is lost (a publish that failed, a broker that dropped it):
    sent again once no first message or retry can still be on its way. How many. A manual system's
    pending is no lost message but an open task: never re-sent, its attempts untouched."""
    settings, now = rt.config.worker, utcnow()
    manual = list(manual_tasks.manual_systems(rt.config))
    wait = grace(settings)
    resend = []
    with rt.transaction() as session:
        tasks = session.scalars(
            select(SystemTask).join(Request)
            .where(SystemTask.status == SystemStatus.PENDING, SystemTask.system.not_in(manual),
                   Request.status.in_([RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED]),
                   Request.received_at < now - timedelta(seconds=wait),
                   # an attempt may run for its lease, then its retry waits its backoff
                   _waited(SystemTask.attempts, SystemTask.started_at, now,
                           lambda n: settings.lease_seconds + settings.longest_backoff(n) + wait,
                           settings.max_attempts),
                   _waited(SystemTask.requeues, SystemTask.queued_at, now, _resend_wait(settings), 8))
            .order_by(SystemTask.id).limit(BATCH).with_for_update(of=SystemTask, skip_locked=True)
        ).all()
        for task in tasks:
            task.queued_at, task.requeues = now, task.requeues + 1
            log.warning("system.resent", request_id=task.request_id, system=task.system, attempt=task.attempts,
                        requeues=task.requeues)
            resend.append((task.request_id, task.system, task.kind))
    for request_id, system, kind in resend:
        rt.dispatch.erase(request_id, system, kind)
    return len(resend)


def restart_received(rt: Runtime) -> int:
    """Requests still `received` once their start and all its retries are overdue: start sent again.
    How many."""
    settings, now = rt.config.worker, utcnow()
    retries = sum(settings.longest_backoff(n) for n in range(1, settings.max_attempts))
    with rt.transaction() as session:
        requests = session.scalars(
            select(Request)
            .where(Request.status == RequestStatus.RECEIVED,
                   Request.received_at < now - timedelta(seconds=grace(settings) + retries),
                   _waited(Request.requeues, Request.queued_at, now, _resend_wait(settings), 8))
            .order_by(Request.received_at).limit(BATCH).with_for_update(skip_locked=True)
        ).all()
        for request in requests:
            request.queued_at, request.requeues = now, request.requeues + 1
            log.warning("request.restarted", request_id=request.id, subject_ref=request.subject_ref,
                        requeues=request.requeues)
        restart = [request.id for request in requests]
    for request_id in restart:
        rt.dispatch.start(request_id)
    return len(restart)


def settle_unsettled(rt: Runtime) -> int:
    """Requests whose systems have all settled but which were not settled themselves (a worker
    vanished in between), settled as the pipeline does, flags and all. How many."""
    unsettled = exists().where(SystemTask.request_id == Request.id, SystemTask.status.not_in(SETTLED))
    failed = exists().where(SystemTask.request_id == Request.id, SystemTask.status == SystemStatus.FAILED)
    with rt.transaction() as session:
        found = session.scalars(
            select(Request.id)
            .where(~unsettled, or_(Request.status == RequestStatus.IN_PROGRESS,
                                   and_(Request.status == RequestStatus.COMPLETED, failed)))
            .order_by(Request.received_at).limit(BATCH)
        ).all()
    settled = 0
    for request_id in found:
        if settle.settle(rt, request_id):  # takes the request's lock: a second reconciler finds it settled
            log.warning("request.settle_missed", request_id=request_id)
            settled += 1
    return settled


def recheck_exemptions(rt: Runtime) -> int:
    """Send exempt systems whose recheck time has come back to the queue (a manual one becomes an open
    task again, with no message); how many."""
    now = utcnow()
    due = []
    with rt.transaction() as session:
        tasks = session.scalars(
            select(SystemTask)
            .where(SystemTask.status == SystemStatus.EXEMPT, SystemTask.recheck_at <= datetime.now(UTC))
            .order_by(SystemTask.recheck_at).limit(BATCH).with_for_update(skip_locked=True)
        ).all()
        for task in tasks:
            move_system(task, SystemStatus.PENDING, recheck_at=None, queued_at=now, requeues=0)
            due.append((task.request_id, task.system, task.kind))
    for request_id, system, kind in due:
        log.info("system.recheck", request_id=request_id, system=system)
        if not manual_tasks.is_manual(rt.config, system):
            rt.dispatch.erase(request_id, system, kind)
    return len(due)


def reconcile(rt: Runtime) -> dict[str, int]:
    """One pass of every reconciliation step, counted; counts by step."""
    done = {
        "parts_resent": part_passes.reconcile(rt, grace(rt.config.worker)),  # first: it renews its passes' leases
        "leases_expired": expire_leases(rt),
        "settled": settle_unsettled(rt),  # after the leases: a last attempt lost may settle a request
        "rechecked": recheck_exemptions(rt),
        "resent": resend_pending(rt),
        "restarted": restart_received(rt),
        "overdue": deadlines.warn_overdue(rt),
        "tasks_due_soon": manual_tasks.remind_due(rt),
    }
    count_pass(rt, done["leases_expired"])
    return done


def count_pass(rt: Runtime, leases_expired: int) -> None:
    """Add a finished pass, and the leases it found expired, to the store's counters with the time:
    the metrics tell from it that the reconciler runs, and how often workers vanish mid-erasure."""
    now = utcnow()
    with rt.transaction() as session:
        for name, added in ((PASSES, 1), (LEASES_EXPIRED, leases_expired)):
            if added:
                session.execute(update(Counter).where(Counter.name == name)
                                .values(value=Counter.value + added, updated_at=now))
