"""The way of one request after intake: resolve, fan out, erase each system, settle.
Every step is safe to run twice: a redelivered message finds its row settled and stops."""

from __future__ import annotations

import dataclasses
import functools
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, contains_eager, selectinload

from connectors.base import Connector, Outcome, Subject
from worker import audit, lineage, redact, suppression
from worker.errors import InputError, PermanentError, TransientError, one_line
from worker.exemptions import exempt_if_retained
from worker.runtime import Runtime
from worker.state import lose_attempt, move_request, move_system, nothing_found
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
        pending = [(each.id, t.system, t.kind) for each in started for t in each.systems
                   if t.status == SystemStatus.PENDING]
        unsent = [each.id for each in started if each.id not in {p[0] for p in pending}]
    send(rt, pending)  # one message per system stands for the group
    for each_id in unsent:  # every system exempt from the start, say: no erasure will settle it
        settle(rt, each_id)


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
    send(rt, [(request_id, system, kind) for system, kind in pending])
    if not pending:
        settle(rt, request_id)


def send(rt: Runtime, pending: Iterable[tuple[str, str, str]]) -> None:
    """Erase messages for (request, system, kind) rows: one per system, standing for every request
    of the rows at that system (`also`)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for request_id, system, kind in pending:
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


def erase_system(rt: Runtime, request_id: str, system: str, also: Sequence[str] = ()) -> None:
    """Claim one system of one request, erase and verify it, record the outcome, settle. A message
    may stand for more requests (`also`: a start's group), and other requests' first attempts at
    the system that are waiting join the pass too: a kind that batches erases them all at once
    (up to `batch_size`); any other erases them one by one, as many as it erases in about
    GROUP_SECONDS (at most `group_size`), and sends the rest of the message's requests on at once
    to its peers. Either way the pass's claims and its outcomes take one transaction each, so the
    store's cost (and the audit trail's append lock) is shared."""
    rows = _claimable(rt, system, request_id, also)
    if not rows:  # a copy of a message whose rows are claimed or settled
        return
    if system not in {s.name for s in rt.config.systems}:
        _fail_unconfigured(rt, system, rows)
        return
    connector = rt.connector(system)
    settings = rt.config.worker
    most = settings.batch_size if connector.batches else rt.pace.group(system, settings.group_size)
    rows, rest = rows[:most], rows[most:]
    if rest:
        rt.dispatch.erase(rest[0], system, rt.config.system(system).kind, also=rest[1:])
    batch = _claim(rt, rows[0], system, rows[1:], len(rows) if connector.batches else most)
    try:
        if batch and connector.batches:
            batch |= _claim_waiting(rt, system, settings.batch_size - len(batch))
        if batch:
            with redact.values(v for subject, _ in batch.values() for v in subject.all_values()):
                _pass(rt, system, connector, {r: subject for r, (subject, _) in batch.items()})
    finally:
        rt.let_go(system, batch)


def _fail_unconfigured(rt: Runtime, system: str, rows: list[str]) -> None:
    """A system taken out of the config while requests still wait for it: each fails, saying so
    (`erasure retry` runs them again once it is back, or a DPO exempts them)."""
    batch = _claim(rt, rows[0], system, rows[1:], len(rows))
    try:
        _record(rt, system, dict.fromkeys(batch, Failed(f"system {system} is not in the config", transient=False)))
    finally:
        rt.let_go(system, batch)


@dataclasses.dataclass(frozen=True)
class Failed:
    """An attempt that did not erase: why, and whether a later attempt may."""

    error: str
    transient: bool


def _pass(rt: Runtime, system: str, connector: Connector, subjects: dict[str, Subject]) -> None:
    """One pass of a connector over the claimed requests, then every outcome in one transaction."""
    results: dict[str, Outcome | Failed] = {}
    for request_id, subject in list(subjects.items()):
        problem = rt.config.system(system).problem_with(subject)
        if problem:
            results[request_id] = Failed(problem, transient=False)
            del subjects[request_id]
    if len(subjects) > 1:
        log.info("system.batch", system=system, requests=len(subjects))
    if connector.batches:
        results |= _erase_together(rt, system, connector, subjects)
    else:
        began, erased = time.monotonic(), 0
        for request_id, subject in subjects.items():
            if erased and time.monotonic() - began > rt.config.worker.lease_seconds / 4:
                break  # the system slowed down: what is left goes back before any lease can run out
            results |= _erase_together(rt, system, connector, {request_id: subject})
            erased += 1
        if erased:
            rt.pace.took(system, time.monotonic() - began, erased)
    _record(rt, system, results)
    left = [(r, system) for r in subjects if r not in results]
    if left:  # sent again at once, in one message
        send(rt, hand_back(rt, left, "its pass ran past a quarter of the lease"))


def hand_back(rt: Runtime, claims: Iterable[tuple[str, str]], why: str) -> list[tuple[str, str, str]]:
    """Put claims this process holds, as (request, system), back to pending, the attempt not counted,
    saying why; those handed back, as (request, system, kind). A claim is matched by its lease, so
    one that lapsed and was taken by another worker stays theirs."""
    held, now, handed = rt.held(), utcnow(), []
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
            handed.append((request_id, system, task.kind))
    return handed


def _erase_together(rt: Runtime, system: str, connector: Connector,
                    subjects: dict[str, Subject]) -> dict[str, Outcome | Failed]:
    """Locate, erase and verify the subjects in one go; each request's outcome, or one failure for all."""
    if not subjects:
        return {}
    ids, members = list(subjects), list(subjects.values())
    try:
        _record_hits(rt, system, dict(zip(ids, connector.locate_many(members), strict=True)))
        outcomes = connector.erase_many(members, functools.partial(_journal, rt, system, ids))
        _record_hits(rt, system, {r: outcome.snapshots for r, outcome in zip(ids, outcomes, strict=True)})
        left = connector.verify_many(members)
    except (TransientError, PermanentError) as exc:
        failed = Failed(one_line(exc), transient=isinstance(exc, TransientError))
        return dict.fromkeys(ids, failed)
    except Exception as exc:  # a bug in a connector: fail the system, keep the worker
        # not the traceback's text: its last line is the message, which may carry an identifier
        log.error("system.crashed", system=system, requests=ids, error=type(exc).__name__, where=_frames(exc))
        return dict.fromkeys(ids, Failed(f"internal error ({type(exc).__name__})", transient=False))
    return {
        request_id: Failed(f"{remaining} items still present after erasure", transient=True)
        if remaining and not outcome.exempt_reason else outcome  # an exemption has said what it keeps, and why
        for request_id, outcome, remaining in zip(ids, outcomes, left, strict=True)
    }


def _frames(exc: BaseException) -> list[str]:
    """Where an exception was raised, as `file:line in function`, without values or source text."""
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)]


def _claimable(rt: Runtime, system: str, request_id: str, also: Sequence[str]) -> list[str]:
    """Of a message's requests, in its order, those whose system may be claimed now: its own request's
    if pending or running on a lapsed lease, the others' if still waiting for a first attempt. Read
    without a lock or a write: most copies of messages, and those of rows a pass took along, stop here."""
    ids = list(dict.fromkeys([request_id, *also]))
    with rt.engine.connect() as conn:
        found = {row[0]: row[1:] for row in conn.execute(
            select(SystemTask.request_id, SystemTask.status, SystemTask.lease_until, SystemTask.attempts)
            .where(SystemTask.system == system, SystemTask.request_id.in_(ids)))}
    now = utcnow()

    def claimable(each: str) -> bool:
        if each not in found:
            return False
        status, lease_until, attempts = found[each]
        if each != request_id:
            return status == SystemStatus.PENDING and attempts == 0
        return status == SystemStatus.PENDING or (
            status == SystemStatus.RUNNING and (lease_until is None or lease_until <= now))

    return [each for each in ids if claimable(each)]


def _waiting(system: str) -> Select[SystemTask]:
    """Requests' first attempts at a system, oldest first (a retry keeps its own backoff, so it never joins)."""
    return (
        select(SystemTask).join(SystemTask.request).options(contains_eager(SystemTask.request))
        .where(SystemTask.system == system, SystemTask.status == SystemStatus.PENDING, SystemTask.attempts == 0,
               Request.status == RequestStatus.IN_PROGRESS)
        .order_by(SystemTask.id)
    )


def _claim(rt: Runtime, request_id: str, system: str, listed: Sequence[str] = (),
           most: int = 1) -> dict[str, tuple[Subject, int]]:
    """The subjects and attempts of the rows this worker may now erase, claimed in one transaction:
    the request's system, the first attempts of the `listed` requests, then other waiting first
    attempts up to `most` in all (rows other workers hold are skipped). Empty if none is ours.
    A claim that instead settles a system (its last attempt lost, or a retention found) settles
    its request."""
    now, settled = utcnow(), list[str]()
    lease_until = now + timedelta(seconds=rt.config.worker.lease_seconds)
    claimed: dict[str, tuple[Subject, int]] = {}
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
                    claimed[request_id] = (rt.subject(task.request), task.attempts)
        if listed:
            tasks = session.scalars(_waiting(system).where(SystemTask.request_id.in_(listed))
                                    .with_for_update(of=SystemTask, skip_locked=True)).all()
            claimed |= _take(rt, tasks, now, lease_until, settled)
        if most > len(claimed) + len(settled):
            tasks = session.scalars(_waiting(system).limit(most - len(claimed) - len(settled))
                                    .with_for_update(of=SystemTask, skip_locked=True)).all()
            claimed |= _take(rt, tasks, now, lease_until, settled)
    for each in settled:
        settle(rt, each)
    return claimed


def _take(rt: Runtime, tasks: Sequence[SystemTask], now: datetime, lease_until: datetime,
          settled: list[str]) -> dict[str, tuple[Subject, int]]:
    """Claim waiting first attempts for this process; one the config now retains is exempt instead
    (added to `settled`)."""
    taken = {}
    for task in tasks:
        if exempt_if_retained(rt.config, task, now):
            settled.append(task.request_id)
            continue
        move_system(task, SystemStatus.RUNNING, attempts=1, started_at=now, lease_until=lease_until)
        rt.hold(task.request_id, task.system, lease_until)
        taken[task.request_id] = (rt.subject(task.request), 1)
    return taken


def _claim_waiting(rt: Runtime, system: str, wanted: int) -> dict[str, tuple[Subject, int]]:
    """For a kind that batches: claim up to `wanted` more requests' first attempts at this system,
    waiting up to `batch_wait_seconds` for that many of them."""
    if wanted < 1:
        return {}
    waiting = _waiting(system)
    until = time.monotonic() + rt.config.worker.batch_wait_seconds
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
        settle(rt, each)
    return taken


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
def _record_hits(rt: Runtime, system: str, found: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    """The snapshots each request's subject was found in, in one transaction."""
    found = {request_id: hits for request_id, hits in found.items() if hits}
    if not found:
        return
    with rt.transaction() as session:
        earlier = session.scalars(select(SnapshotHit).where(SnapshotHit.request_id.in_(found)))
        known = {(h.request_id, h.snapshot): h for h in earlier}
        for request_id, hits in found.items():
            for hit in hits:
                row = known.get((request_id, hit.snapshot))
                if row is None:
                    known[(request_id, hit.snapshot)] = row = SnapshotHit(
                        request_id=request_id, system=system, snapshot=hit.snapshot, rows=hit.rows,
                        files=list(hit.files), found_at=utcnow())
                    session.add(row)
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
def _record(rt: Runtime, system: str, results: dict[str, Outcome | Failed]) -> None:
    """Each request's outcome (or failed attempt) at one system, and the settling of each request whose
    last system this was, in one transaction. The requests' rows are locked first, in id order, then
    the system's: the order settle() and `erasure exempt` lock in, so passes never deadlock."""
    if not results:
        return
    retries: list[tuple[str, str, float]] = []
    with rt.transaction() as session:
        requests = session.scalars(select(Request).where(Request.id.in_(results)).order_by(Request.id)
                                   .with_for_update().options(selectinload(Request.systems))).all()
        tasks = {t.request_id: t for t in session.scalars(
            select(SystemTask).where(SystemTask.request_id.in_([r.id for r in requests]), SystemTask.system == system)
            .order_by(SystemTask.request_id).with_for_update().execution_options(populate_existing=True))}
        locked = {request.id: request for request in requests}
        settled = []
        for request in (locked[r] for r in results if r in locked):  # in the order claimed: oldest first
            task = tasks.get(request.id)
            if task is None or task.status != SystemStatus.RUNNING:
                continue  # its lease ran out and another attempt took over, or a DPO settled it
            result = results[request.id]
            retry_in = None
            if isinstance(result, Failed):
                retry_in = _failed(rt, task, result)
            else:
                _erased(task, result)
            if retry_in is not None:
                retries.append((request.id, task.kind, retry_in))
            else:
                settled.append(request)
        _settle_locked(rt, session, settled)  # the last system to settle settles the request, here
    for request_id, kind, retry_in in retries:
        log.info("system.retry_scheduled", request_id=request_id, system=system, in_seconds=round(retry_in, 1))
        rt.dispatch.erase(request_id, system, kind, countdown=retry_in)


def _erased(task: SystemTask, outcome: Outcome) -> None:
    """Settled: erased, not found, or exempt."""
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


def _failed(rt: Runtime, task: SystemTask, failed: Failed) -> float | None:
    """Back to pending for another attempt (in how many seconds), or failed for good (None)."""
    settings = rt.config.worker
    if failed.transient and task.attempts < settings.max_attempts:
        move_system(task, SystemStatus.PENDING, error=failed.error, lease_until=None)
        return settings.backoff(task.attempts)
    error = f"gave up after {task.attempts} attempts: {failed.error}" if failed.transient else failed.error
    move_system(task, SystemStatus.FAILED, error=error, lease_until=None, finished_at=utcnow())
    return None


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


def settle(rt: Runtime, request_id: str) -> bool:
    """Once every system has settled, settle the request and flag the models that ate its data;
    whether it moved. A completed request whose recheck of an exemption then failed for good turns failed."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, with_for_update=True)
        return request is not None and bool(_settle_locked(rt, session, [request]))


def _settle_locked(rt: Runtime, session: Session, requests: Sequence[Request]) -> list[Request]:
    """settle() for requests whose rows this transaction holds locked, their models flagged and their
    suppression entries written together; those that moved."""
    ready = [r for r in requests if r.status in (RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED)
             and all(task.status in SETTLED for task in r.systems)]
    lineage.flag_models(rt, session, [r for r in ready if r.status == RequestStatus.IN_PROGRESS])
    moved = []
    for request in ready:
        failed = any(task.status == SystemStatus.FAILED for task in request.systems)
        if failed:
            move_request(request, RequestStatus.FAILED)  # a completed one: a recheck failed for good
        elif request.status == RequestStatus.IN_PROGRESS:
            move_request(request, RequestStatus.COMPLETED, completed_at=utcnow())
        else:
            continue  # completed, and a recheck settled: its suppression entry grows below
        moved.append(request)
    # once each: suppression.keep drops a completed request's identifiers unless a recheck waits,
    # so the settling that first finds it nothing found (a first pass, or a recheck) still holds them
    for request in (r for r in ready if nothing_found(r) and r.sealed_identifiers is not None):
        log.warning("request.nothing_found", request_id=request.id, subject_ref=request.subject_ref,
                    systems=len(request.systems))
    suppression.keep(rt, session, [r for r in ready if r.status == RequestStatus.COMPLETED])
    return moved


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
