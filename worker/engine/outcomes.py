"""Recording what a pass did: each request's outcome (or failed attempt) at one system, the
snapshots its subject was found in, and the journal of rewritten files, each in one transaction
that outlasts a short store outage; the last system to settle settles its request there too."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from connectors import registry
from connectors.base import Connector, Outcome, by_an_earlier_attempt
from worker.engine import settle
from worker.engine.state import move_system
from worker.errors import ConfigError, TransientError
from worker.runtime import Runtime
from worker.store.models import Request, SnapshotHit, SystemStatus, SystemTask, utcnow

log = structlog.get_logger("erasure.pipeline")
HIT_TRIES = 3  # a snapshot hit's row made by another part at once: found on the next try


@dataclasses.dataclass(frozen=True)
class Failed:
    """An attempt that did not erase: why, and whether a later attempt may."""

    error: str
    transient: bool
    retry_after: float | None = None  # the system asked to be left alone this long (Retry-After)


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
def record_hits(rt: Runtime, system: str, found: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    """The snapshots each request's subject was found in, in one transaction (the parts of a pass spread over
    workers record theirs at once: one that loses the race to insert a row finds it made and tries again)."""
    if not any(found.values()):
        return
    for attempt in range(1, HIT_TRIES + 1):
        try:
            with rt.transaction() as session:
                record_hits_locked(session, system, found)
            return
        except IntegrityError:
            if attempt == HIT_TRIES:
                raise


def record_hits_locked(session: Session, system: str, found: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    """record_hits() within a transaction the caller holds."""
    found = {request_id: hits for request_id, hits in found.items() if hits}
    if not found:
        return
    earlier = session.scalars(select(SnapshotHit).where(SnapshotHit.request_id.in_(found))
                              .order_by(SnapshotHit.id).with_for_update())  # merged, not overwritten, by two parts
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


def journal(rt: Runtime, system: str, request_ids: list[str], rel: str, rows: list[int]) -> None:
    """Before a rewritten file is swapped in, note per request the rows it removes: if this process
    dies just after the swap, the next attempt finds them gone and counts them from here. A store
    that does not answer stops the swap (the old file stays; the attempt is tried again), and so
    does a claim no longer this process's (its lease ran out and the reconciler put it back, so
    this attempt's outcome would not be recorded: a swap now would lose the count)."""
    held = rt.held()
    try:
        with rt.transaction() as session:
            for request_id, removed in zip(request_ids, rows, strict=True):
                if not removed:
                    continue
                task = session.scalar(  # running under this process's lease, as claims.hand_back matches it
                    select(SystemTask).where(SystemTask.request_id == request_id, SystemTask.system == system,
                                             SystemTask.status == SystemStatus.RUNNING,
                                             SystemTask.lease_until == held.get((request_id, system)))
                    .with_for_update())
                if task is None:
                    raise ClaimLost(f"the claim on {request_id} lapsed before {rel} was swapped in; "
                                    "another attempt erases it")
                task.progress = {**(task.progress or {}), rel: removed}
                rt.note_journaled(request_id, system, rel)
    except SQLAlchemyError as exc:
        raise TransientError(f"store unavailable before swapping in {rel} ({type(exc).__name__})") from None


class ClaimLost(TransientError):
    """A claim that lapsed while its pass ran: the pass stops before it changes anything more."""


def _with_journaled(task: SystemTask, outcome: Outcome, ours: frozenset[str], connector: Connector | None) -> Outcome:
    """The outcome, plus what an earlier attempt journaled and then did (a file swapped in, a transaction
    committed) that this one found already done: the journal's keys this attempt did not account for itself
    (`ours`: what it journaled, or its parts rewrote), as the system's connector lists them."""
    before = {key: n for key, n in (task.progress or {}).items() if key not in ours}
    if not before:
        return outcome
    return connector.with_earlier(outcome, before) if connector else by_an_earlier_attempt(outcome, before)


@_outlasting_store_outages
def record(rt: Runtime, system: str, results: dict[str, Outcome | Failed]) -> None:
    """Each request's outcome (or failed attempt) at one system, and the settling of each request whose
    last system this was, in one transaction. The requests' rows are locked first, in id order, then
    the system's: the order settle() and `erasure exempt` lock in, so passes never deadlock."""
    if not results:
        return
    with rt.transaction() as session:
        retries = record_locked(rt, session, system, results)
    send_retries(rt, system, retries)


def record_locked(rt: Runtime, session: Session, system: str, results: dict[str, Outcome | Failed],
                  accounted: Mapping[str, frozenset[str]] | None = None) -> list[tuple[str, str, float]]:
    """record() within a transaction the caller holds; the retries (request, kind, in seconds) to send
    once it commits. `accounted`: each request's journal keys its outcome counted, where not what this
    process journaled (a pass spread over parts: the files they rewrote)."""
    retries: list[tuple[str, str, float]] = []
    connector = origin(rt, system)
    if results:
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
                retry_in = _failed(rt, task, result, connector)
            else:
                ours = rt.journaled(request.id, system) if accounted is None else accounted.get(request.id,
                                                                                               frozenset())
                made = _connector(rt, system) if task.progress else None  # lists an earlier attempt's work
                erased(task, result, {"connector": connector}, ours, made)
            if retry_in is not None:
                retries.append((request.id, task.kind, retry_in))
            else:
                settled.append(request)
        settle.settle_locked(rt, session, settled)  # the last system to settle settles the request, here
    return retries


def send_retries(rt: Runtime, system: str, retries: list[tuple[str, str, float]]) -> None:
    """Send each failed attempt's retry, once its outcome is committed."""
    for request_id, kind, retry_in in retries:
        log.info("system.retry_scheduled", request_id=request_id, system=system, in_seconds=round(retry_in, 1))
        rt.dispatch.erase(request_id, system, kind, countdown=retry_in)


def _connector(rt: Runtime, system: str) -> Connector | None:
    """The system's connector (None for a system no longer configured, or a kind that cannot be loaded)."""
    try:
        return rt.connector(system)
    except (KeyError, ConfigError):
        return None


def origin(rt: Runtime, system: str) -> dict[str, str]:
    """The distribution and version of the system's connector kind, which its outcomes' audit events
    record ({} for a system no longer configured)."""
    try:
        return registry.kind(rt.config.system(system).kind).origin()
    except (KeyError, ConfigError):
        return {}


def erased(task: SystemTask, outcome: Outcome, audit_data: dict[str, Any], ours: frozenset[str] = frozenset(),
           connector: Connector | None = None) -> None:
    """Settled: erased, not found, or exempt; `audit_data` goes into the audit event (the connector that
    erased it, or the person who settled a manual system's task); `ours`: the journal keys this attempt
    accounted for; `connector`: the system's, which lists what an earlier attempt did."""
    outcome, task.progress = _with_journaled(task, outcome, ours, connector), None
    items, evidence = _with_earlier_passes(task, outcome)
    if outcome.exempt_reason:
        move_system(task, SystemStatus.EXEMPT, items_erased=items, evidence=evidence, error=None,
                    reason=outcome.exempt_reason, recheck_at=outcome.recheck_at, lease_until=None,
                    finished_at=utcnow(), audit_data=audit_data)
    else:
        move_system(task, SystemStatus.ERASED if items else SystemStatus.NOT_FOUND, items_erased=items,
                    evidence=evidence, error=None, reason=None, recheck_at=None, lease_until=None,
                    finished_at=utcnow(), audit_data=audit_data)


def _failed(rt: Runtime, task: SystemTask, failed: Failed, connector: dict[str, str]) -> float | None:
    """Back to pending for another attempt (in how many seconds), or failed for good (None)."""
    settings = rt.config.worker
    if failed.transient and task.attempts < settings.max_attempts:
        # what the system asked for, within the longest backoff: a lease must not run out waiting
        wait = max(settings.backoff(task.attempts), min(failed.retry_after or 0.0, settings.retry_backoff_max_seconds))
        move_system(task, SystemStatus.PENDING, error=failed.error, lease_until=None,
                    audit_data={"retry_in": round(wait, 1)})  # the wait `erasure explain` shows
        return wait
    error = f"gave up after {task.attempts} attempts: {failed.error}" if failed.transient else failed.error
    move_system(task, SystemStatus.FAILED, error=error, lease_until=None, finished_at=utcnow(),
                audit_data={"connector": connector})
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
