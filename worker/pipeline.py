"""The way of one request after intake: resolve, fan out, erase each system, settle.
Every step is safe to run twice: a redelivered message finds its row settled and stops."""

from __future__ import annotations

import dataclasses
import functools
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from connectors.base import Connector, Outcome, Subject
from worker import audit, lineage, redact, suppression
from worker.errors import InputError, PermanentError, TransientError, one_line
from worker.exemptions import exempt_if_retained
from worker.runtime import Runtime
from worker.state import lose_attempt, move_request, move_system
from worker.store.models import (
    SETTLED,
    Request,
    RequestStatus,
    SnapshotHit,
    SystemStatus,
    SystemTask,
    utcnow,
)

log = structlog.get_logger("erasure.pipeline")


def start(rt: Runtime, request_id: str) -> None:
    """Resolve the request's identifiers once, then enqueue one erasure per pending system. With no
    resolvers configured (nothing to ask other systems), it all happens in one transaction."""
    resolved = None
    if rt.config.resolvers:  # resolvers query other systems: never while holding the request's lock
        with rt.transaction() as session:
            request = session.get(Request, request_id)
            if request is None:
                log.warning("request.unknown", request_id=request_id)
                return
            subject = rt.subject(request) if request.status == RequestStatus.RECEIVED else None
        if subject is not None:
            try:
                with redact.values(subject.all_values()):
                    resolved = resolve(rt, request_id, subject)
            except PermanentError as exc:
                with redact.values(subject.all_values()):
                    fail_unstarted(rt, request_id, one_line(exc))
                return
    with rt.transaction() as session:
        request = session.get(Request, request_id, with_for_update=True)
        if request is None:
            log.warning("request.unknown", request_id=request_id)
            return
        if request.status == RequestStatus.RECEIVED and (resolved is not None or not rt.config.resolvers):
            subject = resolved or rt.subject(request)
            audit.record(session, "request.resolved", request_id,
                         identifier_types={k: len(v) for k, v in subject.identifiers.items()})
            sealed = rt.seal(request_id, resolved) if resolved is not None else request.sealed_identifiers
            move_request(request, RequestStatus.IN_PROGRESS, sealed_identifiers=sealed)
            now = utcnow()
            for task in request.systems:  # no message for a system the config retains
                exempt_if_retained(rt.config, task, now)
        started = request.status == RequestStatus.IN_PROGRESS
        pending = [(t.system, t.kind) for t in request.systems if started and t.status == SystemStatus.PENDING]
    _send(rt, request_id, pending)


def resolve(rt: Runtime, request_id: str, subject: Subject) -> Subject:
    """Add the identifiers the resolvers derive (email -> user_id), each validated."""
    found = {k: set(v) for k, v in subject.identifiers.items()}
    for resolver in rt.config.resolvers:
        given = sorted(found.get(resolver.from_type, ()))
        if not given:
            continue
        values = rt.connector(resolver.system).resolve(resolver.query, resolver.from_type, given)  # type: ignore[attr-defined]
        kept = 0
        for value in values:
            try:
                found.setdefault(resolver.to_type, set()).add(rt.config.identifiers[resolver.to_type].clean(value))
                kept += 1
            except InputError as exc:
                log.warning("resolver.value_refused", request_id=request_id, system=resolver.system,
                            to=resolver.to_type, problem=str(exc))
        log.info("request.resolved", request_id=request_id, system=resolver.system,
                 frm=resolver.from_type, to=resolver.to_type, found=kept)
    return Subject({k: tuple(sorted(v)) for k, v in found.items()})


def _fan_out(rt: Runtime, request_id: str) -> None:
    with rt.transaction() as session:
        pending = session.execute(
            select(SystemTask.system, SystemTask.kind)
            .join(Request)
            .where(SystemTask.request_id == request_id, SystemTask.status == SystemStatus.PENDING,
                   Request.status == RequestStatus.IN_PROGRESS)
        ).all()
    _send(rt, request_id, [(system, kind) for system, kind in pending])


def _send(rt: Runtime, request_id: str, pending: list[tuple[str, str]]) -> None:
    """One erasure message per pending system; none pending (every system exempt from the start,
    say) and no erasure will settle the request, so settle it here."""
    for system, kind in pending:
        rt.dispatch.erase(request_id, system, kind)
    if not pending:
        settle(rt, request_id)


def fail_unstarted(rt: Runtime, request_id: str, error: str) -> None:
    """Fail a request whose resolution cannot proceed, with every pending system."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, with_for_update=True)
        if request is None or request.status != RequestStatus.RECEIVED:
            return
        for task in request.systems:
            if task.status == SystemStatus.PENDING:
                move_system(task, SystemStatus.FAILED, error=f"not started: {error}", finished_at=utcnow())
        move_request(request, RequestStatus.FAILED, error=error)


def erase_system(rt: Runtime, request_id: str, system: str) -> None:
    """Claim one system of one request, erase and verify it, record the outcome, settle.
    For a kind that batches, other requests waiting for the same system join the pass."""
    claimed = _claim(rt, request_id, system)
    if claimed is None:
        return
    batch = {request_id: claimed}
    try:
        connector = rt.connector(system)
        if connector.batches:
            batch |= _claim_waiting(rt, system, request_id)
        with redact.values(v for subject, _ in batch.values() for v in subject.all_values()):
            _erase(rt, system, connector, batch)  # each outcome settles its request in its own transaction
    finally:
        rt.let_go(system, batch)


def _erase(rt: Runtime, system: str, connector: Connector, batch: dict[str, tuple[Subject, int]]) -> None:
    """One pass of a connector over the claimed requests; each request's outcome recorded apart."""
    subjects: dict[str, Subject] = {}
    for request_id, (subject, _) in batch.items():
        problem = rt.config.system(system).problem_with(subject)
        if problem:
            _attempt_failed(rt, request_id, system, problem, transient=False)
        else:
            subjects[request_id] = subject
    if not subjects:
        return
    ids, members = list(subjects), list(subjects.values())
    if len(ids) > 1:
        log.info("system.batch", system=system, requests=len(ids))
    try:
        for request_id, hits in zip(ids, connector.locate_many(members), strict=True):
            _record_hits(rt, request_id, system, hits)
        outcomes = connector.erase_many(members, functools.partial(_journal, rt, system, ids))
        for request_id, outcome in zip(ids, outcomes, strict=True):
            _record_hits(rt, request_id, system, outcome.snapshots)
        left = connector.verify_many(members)
    except (TransientError, PermanentError) as exc:
        for request_id in ids:
            _attempt_failed(rt, request_id, system, one_line(exc), transient=isinstance(exc, TransientError))
        return
    except Exception as exc:  # a bug in a connector: fail the system, keep the worker
        # not the traceback's text: its last line is the message, which may carry an identifier
        log.error("system.crashed", system=system, requests=ids, error=type(exc).__name__, where=_frames(exc))
        for request_id in ids:
            _attempt_failed(rt, request_id, system, f"internal error ({type(exc).__name__})", transient=False)
        return
    for request_id, outcome, remaining in zip(ids, outcomes, left, strict=True):
        if remaining and not outcome.exempt_reason:  # an exemption has said what it keeps, and why
            _attempt_failed(rt, request_id, system, f"{remaining} items still present after erasure", transient=True)
        else:
            _record_outcome(rt, request_id, system, outcome)


def _frames(exc: BaseException) -> list[str]:
    """Where an exception was raised, as `file:line in function`, without values or source text."""
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)]


def _claim(rt: Runtime, request_id: str, system: str) -> tuple[Subject, int] | None:
    """The subject and attempt of a system this worker may now erase, or None. A claim that
    instead settles the system (its last attempt lost, or a retention found) settles the request."""
    now, settled = utcnow(), False
    with rt.transaction() as session:
        task = session.scalar(
            select(SystemTask).where(SystemTask.request_id == request_id, SystemTask.system == system)
            .with_for_update()
        )
        if task is None or task.request.status not in (RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED):
            return None  # a completed request's system is pending again only for a recheck
        lease_lapsed = task.status == SystemStatus.RUNNING and (task.lease_until is None or task.lease_until <= now)
        settled = lease_lapsed and not lose_attempt(task, rt.config.worker.max_attempts, now)  # the last attempt
        if not settled and task.status == SystemStatus.PENDING:
            # a retention checked again: a message may come from a recheck or a re-send
            settled = exempt_if_retained(rt.config, task, now)
            if not settled:
                lease_until = now + timedelta(seconds=rt.config.worker.lease_seconds)
                move_system(task, SystemStatus.RUNNING, attempts=task.attempts + 1, started_at=now,
                            lease_until=lease_until)
                rt.hold(request_id, system, lease_until)
                return rt.subject(task.request), task.attempts
    if settled:
        settle(rt, request_id)
    return None


def _claim_waiting(rt: Runtime, system: str, claimed: str) -> dict[str, tuple[Subject, int]]:
    """Claim other requests' first attempts at this system, waiting up to `batch_wait_seconds`
    for up to `batch_size - 1` of them (a retry keeps its own backoff, so it never joins)."""
    settings = rt.config.worker
    wanted = settings.batch_size - 1
    waiting = (
        select(SystemTask).join(Request)
        .where(SystemTask.system == system, SystemTask.status == SystemStatus.PENDING, SystemTask.attempts == 0,
               SystemTask.request_id != claimed, Request.status == RequestStatus.IN_PROGRESS)
        .order_by(SystemTask.id)
    )
    if wanted < 1:
        return {}
    until = time.monotonic() + settings.batch_wait_seconds
    while time.monotonic() < until:
        with rt.transaction() as session:
            if len(session.scalars(waiting.with_only_columns(SystemTask.id).limit(wanted)).all()) >= wanted:
                break
        time.sleep(min(0.2, max(0.0, until - time.monotonic())))
    now = utcnow()
    lease_until = now + timedelta(seconds=settings.lease_seconds)
    with rt.transaction() as session:
        tasks = session.scalars(waiting.limit(wanted).with_for_update(of=SystemTask, skip_locked=True)).all()
        for task in tasks:
            move_system(task, SystemStatus.RUNNING, attempts=1, started_at=now, lease_until=lease_until)
            rt.hold(task.request_id, system, lease_until)
        return {task.request_id: (rt.subject(task.request), 1) for task in tasks}


def _locked(session: Session, request_id: str, system: str) -> tuple[Request | None, SystemTask | None]:
    """The request's row, then its system's if running, both locked: the order settle() and
    `erasure exempt` lock in, so that recording an outcome and settling share one transaction."""
    request = session.get(Request, request_id, with_for_update=True)
    return request, (_running(session, request_id, system) if request is not None else None)


def _running(session, request_id: str, system: str) -> SystemTask | None:  # type: ignore[no-untyped-def]
    task = session.scalar(
        select(SystemTask).where(SystemTask.request_id == request_id, SystemTask.system == system)
        .with_for_update()
    )
    return task if task is not None and task.status == SystemStatus.RUNNING else None


def _outlasting_store_outages(write: Callable[..., None]) -> Callable[..., None]:
    """A store write that records an erasure, tried again while the store is away (for up to half
    the lease, which keeps the claim ours): only this process knows the outcome, and the attempt
    after the lease would find the data gone and record nothing erased."""
    @functools.wraps(write)
    def written(rt: Runtime, *args: Any, **kwargs: Any) -> None:
        until, pause = time.monotonic() + rt.config.worker.lease_seconds / 2, 0.5
        while True:
            try:
                return write(rt, *args, **kwargs)
            except OperationalError as exc:
                if time.monotonic() + pause > until:
                    raise
                log.warning("store.unavailable", write=write.__name__, error=type(exc.orig).__name__,
                            retry_in=pause)
                time.sleep(pause)
                pause = min(2 * pause, 5.0)
    return written


@_outlasting_store_outages
def _record_hits(rt: Runtime, request_id: str, system: str, hits: tuple) -> None:  # type: ignore[type-arg]
    if not hits:
        return
    with rt.transaction() as session:
        earlier = session.scalars(select(SnapshotHit).where(SnapshotHit.request_id == request_id))
        known = {h.snapshot: h for h in earlier}
        for hit in hits:
            row = known.get(hit.snapshot)
            if row is None:
                session.add(SnapshotHit(request_id=request_id, system=system, snapshot=hit.snapshot,
                                        rows=hit.rows, files=list(hit.files), found_at=utcnow()))
            else:
                row.rows, row.files = max(row.rows, hit.rows), sorted(set(row.files) | set(hit.files))


def _journal(rt: Runtime, system: str, request_ids: list[str], rel: str, rows: list[int]) -> None:
    """Before a rewritten file is swapped in, note per request the rows it removes: if this process
    dies just after the swap, the next attempt finds them gone and counts them from here. A store
    that does not answer stops the swap (the old file stays; the attempt is tried again)."""
    try:
        with rt.transaction() as session:
            for request_id, removed in zip(request_ids, rows, strict=True):
                task = _running(session, request_id, system) if removed else None
                if task is not None:
                    task.progress = {**(task.progress or {}), rel: removed}
    except SQLAlchemyError as exc:
        raise TransientError(f"store unavailable before swapping in {rel} ({type(exc).__name__})") from None


def _with_journaled(task: SystemTask, outcome: Outcome) -> Outcome:
    """The outcome, plus the rows of files an earlier attempt swapped in (journaled) that this one
    found already without the subject's rows."""
    files = list(outcome.evidence.get("files", []))
    rewritten = {f["file"] for f in files if f.get("rows_removed")}
    swapped_before = {rel: n for rel, n in (task.progress or {}).items() if rel not in rewritten}
    if not swapped_before:
        return outcome
    files += [{"file": rel, "rows_removed": n, "by_an_earlier_attempt": True}
              for rel, n in sorted(swapped_before.items())]
    return dataclasses.replace(outcome, items_erased=outcome.items_erased + sum(swapped_before.values()),
                               evidence={**outcome.evidence, "files": files})


@_outlasting_store_outages
def _record_outcome(rt: Runtime, request_id: str, system: str, outcome: Outcome) -> None:
    with rt.transaction() as session:
        request, task = _locked(session, request_id, system)
        if request is None or task is None:
            return
        outcome, task.progress = _with_journaled(task, outcome), None
        items, evidence = _with_earlier_passes(task, outcome)
        if outcome.exempt_reason:
            move_system(task, SystemStatus.EXEMPT, items_erased=items, evidence=evidence, error=None,
                        reason=outcome.exempt_reason, recheck_at=outcome.recheck_at, lease_until=None,
                        finished_at=utcnow())
        else:
            move_system(task, SystemStatus.ERASED if items else SystemStatus.NOT_FOUND, items_erased=items,
                        evidence=evidence, error=None, reason=None, recheck_at=None, lease_until=None,
                        finished_at=utcnow())
        _settle_locked(rt, session, request)  # the last system to settle settles the request, here


def _with_earlier_passes(task: SystemTask, outcome: Outcome) -> tuple[int, dict[str, Any]]:
    """Items and evidence of this pass, plus those of earlier passes that erased something
    (a recheck after an exemption erases what the lock kept; the first pass stays on record)."""
    evidence: dict[str, Any] = {**outcome.evidence, "items": outcome.items_erased}
    if not task.evidence:
        return outcome.items_erased, evidence
    previous = dict(task.evidence)
    earlier = previous.pop("earlier", [])
    evidence["earlier"] = [*earlier, previous] if previous.get("items") else earlier
    return outcome.items_erased + (task.items_erased or 0), evidence


@_outlasting_store_outages
def _attempt_failed(rt: Runtime, request_id: str, system: str, error: str, transient: bool) -> None:
    settings = rt.config.worker
    retry_in = None
    with rt.transaction() as session:
        request, task = _locked(session, request_id, system)
        if request is None or task is None:
            return
        if transient and task.attempts < settings.max_attempts:
            retry_in = settings.backoff(task.attempts)
            move_system(task, SystemStatus.PENDING, error=error, lease_until=None)
        else:
            if transient:
                error = f"gave up after {task.attempts} attempts: {error}"
            move_system(task, SystemStatus.FAILED, error=error, lease_until=None, finished_at=utcnow())
            _settle_locked(rt, session, request)
        kind = task.kind
    if retry_in is not None:
        log.info("system.retry_scheduled", request_id=request_id, system=system, in_seconds=round(retry_in, 1))
        rt.dispatch.erase(request_id, system, kind, countdown=retry_in)


def settle(rt: Runtime, request_id: str) -> bool:
    """Once every system has settled, settle the request and flag the models that ate its data;
    whether it moved. A completed request whose recheck of an exemption then failed for good turns failed."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, with_for_update=True)
        return request is not None and _settle_locked(rt, session, request)


def _settle_locked(rt: Runtime, session: Session, request: Request) -> bool:
    """settle() within a transaction that holds the request's row lock."""
    if request.status not in (RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED):
        return False
    if any(task.status not in SETTLED for task in request.systems):
        return False
    failed = any(task.status == SystemStatus.FAILED for task in request.systems)
    if request.status == RequestStatus.COMPLETED:
        if failed:
            move_request(request, RequestStatus.FAILED)
        else:
            suppression.keep(rt, session, request)  # a recheck settled: what replay re-erases grew
        return failed
    lineage.flag_models(rt, session, request)
    if failed:
        move_request(request, RequestStatus.FAILED)
    else:
        move_request(request, RequestStatus.COMPLETED, completed_at=utcnow())
        suppression.keep(rt, session, request)
    return True


def retry(rt: Runtime, request_id: str) -> list[str]:
    """Put the failed systems of a failed request back to pending, with fresh attempts.
    Each is marked as just sent, so the reconciler gives the new message time to arrive."""
    from worker.errors import NoSuchRequest, RefusedError

    now = utcnow()
    with rt.transaction() as session:
        request = session.get(Request, request_id, with_for_update=True)
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        if request.status != RequestStatus.FAILED:
            raise RefusedError(f"request {request_id} is {request.status}, not failed: nothing to retry")
        failed = [t for t in request.systems if t.status == SystemStatus.FAILED]
        for task in failed:
            move_system(task, SystemStatus.PENDING, attempts=0, error=None, finished_at=None,
                        queued_at=now, requeues=0)
        unstarted = request.error is not None
        audit.record(session, "request.retried", request_id, systems=[t.system for t in failed])
        move_request(request, RequestStatus.RECEIVED if unstarted else RequestStatus.IN_PROGRESS, error=None,
                     queued_at=now, requeues=0)
    if unstarted:
        rt.dispatch.start(request_id)
    else:
        _fan_out(rt, request_id)
    return [t.system for t in failed]
