"""Starting a request: resolve its identifiers once, begin it (with the other received requests
a start takes along), and send one erase message per system; retry a failed request; fail one
whose resolution cannot proceed. Every step is safe to run twice."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from connectors import redact
from connectors.base import Subject
from worker.engine import audit, manual_tasks, settle
from worker.engine.retention import exempt_if_retained
from worker.engine.state import Pending, move_request, move_system
from worker.errors import InputError, NoSuchRequest, PermanentError, RefusedError, one_line
from worker.runtime import Runtime
from worker.store.models import Request, RequestStatus, SystemStatus, SystemTask, utcnow

log = structlog.get_logger("erasure.pipeline")


def start(rt: Runtime, request_id: str, redelivered: bool = False) -> None:
    """Resolve the request's identifiers once, then enqueue one erasure per pending system. With no
    resolvers configured (nothing to ask other systems), it all happens in one transaction, which
    starts other received requests along with this one (up to `group_size`): their own start
    messages then find them started and send nothing. A start that finds its request started by
    another sends nothing unless its message was redelivered (its first delivery's worker may have
    died before sending); the reconciler re-sends what a starter that died left unsent."""
    status = _status(rt, request_id)
    if status is None:
        log.warning("request.unknown", request_id=request_id)
        return
    if status != RequestStatus.RECEIVED and not (status == RequestStatus.IN_PROGRESS and redelivered):
        return  # started along with another request, or settled: nothing to send
    resolved = None
    if rt.config.resolvers:  # resolvers query other systems: never while holding the request's lock
        with rt.transaction() as session:
            request = session.get_one(Request, request_id)
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
        request = session.get_one(Request, request_id, with_for_update=True, options=[selectinload(Request.systems)])
        started: list[Request] = []
        if request.status == RequestStatus.RECEIVED and (resolved is not None or not rt.config.resolvers):
            started = [request, *_received(session, request_id, 0 if rt.config.resolvers
                                           else rt.config.worker.group_size - 1)]
            for each in started:
                _begin(rt, session, each, resolved if each is request else None)
        elif request.status == RequestStatus.IN_PROGRESS and redelivered:
            started = [request]
        pending = [Pending(each.id, t.system, t.kind) for each in started for t in each.systems
                   if t.status == SystemStatus.PENDING]
        unsent = [each.id for each in started if each.id not in {p.request_id for p in pending}]
    send(rt, pending)  # one message per system stands for the group
    for each_id in unsent:  # every system exempt from the start, say: no erasure will settle it
        settle.settle(rt, each_id)


def _status(rt: Runtime, request_id: str) -> str | None:
    """A request's status, read without a lock (None for an unknown request)."""
    with rt.engine.connect() as conn:
        return conn.execute(select(Request.status).where(Request.id == request_id)).scalar()


def _received(session: Session, request_id: str, most: int) -> Sequence[Request]:
    """Up to `most` other received requests, oldest first, locked (skipping those another worker holds)."""
    if most < 1:
        return []
    return session.scalars(
        select(Request).where(Request.status == RequestStatus.RECEIVED, Request.id != request_id)
        .order_by(Request.received_at).limit(most).with_for_update(skip_locked=True)
        .options(selectinload(Request.systems))
    ).all()


def _begin(rt: Runtime, session: Session, request: Request, resolved: Subject | None) -> None:
    """A received request in progress: its identifiers (with those resolved) sealed, retained systems exempt."""
    subject = resolved or rt.subject(request)
    audit.record(session, "request.resolved", request.id,
                 identifier_types={k: len(v) for k, v in subject.identifiers.items()})
    sealed = rt.seal(request.id, resolved) if resolved is not None else request.sealed_identifiers
    move_request(request, RequestStatus.IN_PROGRESS, sealed_identifiers=sealed)
    now = utcnow()
    for task in request.systems:  # no message for a system the config retains
        exempt_if_retained(rt.config, task, now)


def resolve(rt: Runtime, request_id: str | None, subject: Subject) -> Subject:
    """Add the identifiers the resolvers derive (email -> user_id), each validated (for a request, or for
    `erasure locate` and `export`, which have none: resolvers only read)."""
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
    send(rt, [Pending(request_id, system, kind) for system, kind in pending])
    if not pending:  # every system exempt from the start, say: no erasure will settle the request
        settle.settle(rt, request_id)


def send(rt: Runtime, pending: Iterable[Pending]) -> None:
    """Erase messages for systems waiting for one: one per system, standing for every request
    waiting at that system (`also`). A manual system gets none: it waits, an open task, for a person."""
    groups: dict[tuple[str, str], list[str]] = {}
    manual = manual_tasks.manual_systems(rt.config)
    for request_id, system, kind in pending:
        if system in manual:
            continue
        groups.setdefault((system, kind), []).append(request_id)
    for (system, kind), ids in groups.items():
        rt.dispatch.erase(ids[0], system, kind, also=ids[1:])


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


def retry(rt: Runtime, request_id: str, by: str | None = None) -> list[str]:
    """Put the failed systems of a failed request back to pending, with fresh attempts.
    Each is marked as just sent, so the reconciler gives the new message time to arrive.
    `by`, who asked, goes into the audit event."""
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
        audit.record(session, "request.retried", request_id, systems=[t.system for t in failed], by=by)
        move_request(request, RequestStatus.RECEIVED if unstarted else RequestStatus.IN_PROGRESS, error=None,
                     queued_at=now, requeues=0)
    if unstarted:
        rt.dispatch.start(request_id)
    else:
        _fan_out(rt, request_id)
    return [t.system for t in failed]
