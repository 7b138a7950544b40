"""Claims: which rows of a system a worker may erase now, taken with a lease in one transaction
(rows another worker holds are skipped), and handed back when it stops before erasing them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Select, select
from sqlalchemy.orm import contains_eager

from connectors.base import Subject
from worker.engine import settle
from worker.engine.retention import exempt_if_retained
from worker.engine.state import Pending, lose_attempt, move_system
from worker.runtime import Runtime
from worker.store.models import Request, RequestStatus, SystemStatus, SystemTask, utcnow

log = structlog.get_logger("erasure.pipeline")
Claimed = dict[str, Subject]  # the rows claimed at one system: request id -> its subject, oldest first


def claimable(rt: Runtime, system: str, request_id: str, also: Sequence[str]) -> list[str]:
    """Of a message's requests, in its order, those whose system may be claimed now: its own request's
    if pending or running on a lapsed lease, the others' if still waiting for a first attempt. Read
    without a lock or a write: most copies of messages, and those of rows a pass took along, stop here."""
    ids = list(dict.fromkeys([request_id, *also]))
    with rt.engine.connect() as conn:
        found = {row[0]: row[1:] for row in conn.execute(
            select(SystemTask.request_id, SystemTask.status, SystemTask.lease_until, SystemTask.attempts)
            .where(SystemTask.system == system, SystemTask.request_id.in_(ids)))}
    now = utcnow()

    def may_claim(each: str) -> bool:
        if each not in found:
            return False
        status, lease_until, attempts = found[each]
        if each != request_id:
            return status == SystemStatus.PENDING and attempts == 0
        return status == SystemStatus.PENDING or (
            status == SystemStatus.RUNNING and (lease_until is None or lease_until <= now))

    return [each for each in ids if may_claim(each)]


def _waiting(system: str) -> Select[SystemTask]:
    """Requests' first attempts at a system, oldest first (a retry keeps its own backoff, so it never joins)."""
    return (
        select(SystemTask).join(SystemTask.request).options(contains_eager(SystemTask.request))
        .where(SystemTask.system == system, SystemTask.status == SystemStatus.PENDING, SystemTask.attempts == 0,
               Request.status == RequestStatus.IN_PROGRESS)
        .order_by(SystemTask.id)
    )


def claim(rt: Runtime, request_id: str, system: str, listed: Sequence[str] = (),
           most: int = 1) -> Claimed:
    """The subjects and attempts of the rows this worker may now erase, claimed in one transaction:
    the request's system, the first attempts of the `listed` requests, then other waiting first
    attempts up to `most` in all (rows other workers hold are skipped). Empty if none is ours.
    A claim that instead settles a system (its last attempt lost, or a retention found) settles
    its request."""
    now, settled = utcnow(), list[str]()
    lease_until = now + timedelta(seconds=rt.config.worker.lease_seconds)
    claimed: Claimed = {}
    with rt.transaction() as session:
        task = session.scalar(
            select(SystemTask).where(SystemTask.request_id == request_id, SystemTask.system == system)
            .with_for_update()
        )
        # a completed request's system is pending again only for a recheck
        if task is not None and task.request.status in (RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED):
            lease_lapsed = task.status == SystemStatus.RUNNING and (
                task.lease_until is None or task.lease_until <= now)
            if lease_lapsed and not lose_attempt(task, rt.config.worker.max_attempts, now):  # the last attempt
                settled.append(request_id)
            elif task.status == SystemStatus.PENDING:
                # a retention checked again: a message may come from a recheck or a re-send
                if exempt_if_retained(rt.config, task, now):
                    settled.append(request_id)
                else:
                    move_system(task, SystemStatus.RUNNING, attempts=task.attempts + 1, started_at=now,
                                lease_until=lease_until)
                    rt.hold(request_id, system, lease_until)
                    claimed[request_id] = rt.subject(task.request)
        if listed:
            tasks = session.scalars(_waiting(system).where(SystemTask.request_id.in_(listed))
                                    .with_for_update(of=SystemTask, skip_locked=True)).all()
            claimed |= _take(rt, tasks, now, lease_until, settled)
        if most > len(claimed) + len(settled):
            tasks = session.scalars(_waiting(system).limit(most - len(claimed) - len(settled))
                                    .with_for_update(of=SystemTask, skip_locked=True)).all()
            claimed |= _take(rt, tasks, now, lease_until, settled)
    for each in settled:
        settle.settle(rt, each)
    return claimed


def _take(rt: Runtime, tasks: Sequence[SystemTask], now: datetime, lease_until: datetime,
          settled: list[str]) -> Claimed:
    """Claim waiting first attempts for this process; one the config now retains is exempt instead
    (added to `settled`)."""
    taken: Claimed = {}
    for task in tasks:
        if exempt_if_retained(rt.config, task, now):
            settled.append(task.request_id)
            continue
        move_system(task, SystemStatus.RUNNING, attempts=1, started_at=now, lease_until=lease_until)
        rt.hold(task.request_id, task.system, lease_until)
        taken[task.request_id] = rt.subject(task.request)
    return taken


def claim_waiting(rt: Runtime, system: str, wanted: int, wait: bool = True) -> Claimed:
    """For a kind that batches: claim up to `wanted` more requests' first attempts at this system,
    waiting up to `batch_wait_seconds` for that many of them (with `wait`; else those waiting now)."""
    if wanted < 1:
        return {}
    waiting = _waiting(system)
    until = time.monotonic() + (rt.config.worker.batch_wait_seconds if wait else 0.0)
    while time.monotonic() < until:
        with rt.transaction() as session:
            if len(session.scalars(waiting.with_only_columns(SystemTask.id).limit(wanted)).all()) >= wanted:
                break
        time.sleep(min(0.2, max(0.0, until - time.monotonic())))
    now, settled = utcnow(), list[str]()
    with rt.transaction() as session:
        tasks = session.scalars(waiting.limit(wanted).with_for_update(of=SystemTask, skip_locked=True)).all()
        taken = _take(rt, tasks, now, now + timedelta(seconds=rt.config.worker.lease_seconds), settled)
    for each in settled:
        settle.settle(rt, each)
    return taken


def hand_back(rt: Runtime, claims: Iterable[tuple[str, str]], why: str) -> list[Pending]:
    """Put claims this process holds, as (request, system), back to pending, the attempt not counted,
    saying why; those handed back. A claim is matched by its lease, so one that lapsed and was taken
    by another worker stays theirs."""
    held, now, handed = rt.held(), utcnow(), list[Pending]()
    with rt.transaction() as session:
        for request_id, system in claims:
            task = session.scalar(
                select(SystemTask)
                .where(SystemTask.request_id == request_id, SystemTask.system == system,
                       SystemTask.status == SystemStatus.RUNNING,
                       SystemTask.lease_until == held.get((request_id, system)))
                .with_for_update()
            )
            if task is None:
                continue
            log.warning("system.handed_back", request_id=request_id, system=system, attempt=task.attempts)
            move_system(task, SystemStatus.PENDING, attempts=task.attempts - 1, lease_until=None,
                        error=f"attempt {task.attempts} handed back: {why}", queued_at=now, requeues=0)
            handed.append(Pending(request_id, system, task.kind))
    return handed
