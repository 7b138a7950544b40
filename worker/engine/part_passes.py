"""A snapshot pass spread over parts (parts.py runs each): settled from all its parts in the
transaction that records the last, failed with a part that fails for good, and kept alive by the
reconciler while parts are left (its requests' leases renewed, lost parts sent again).

Rows are locked in one order everywhere: the pass, then its parts, then requests, then system tasks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from connectors.base import Outcome
from connectors.spreading import Rewritten, Splits
from worker import tracing
from worker.engine import outcomes
from worker.runtime import Runtime
from worker.store.models import PartStatus, SnapshotPart, SnapshotPass, SystemStatus, SystemTask, utcnow

log = structlog.get_logger("erasure.pipeline")
OPEN = (PartStatus.PENDING, PartStatus.RUNNING)
LIMIT = 500  # open passes the reconciler looks at in one transaction
Retries = list[tuple[str, str, float]]  # (request, kind, in seconds): failed attempts to send again


def settle(rt: Runtime, session: Session, the_pass: SnapshotPass, connector: Splits) -> Retries:
    """Every request's outcome from all the parts put together (by the system's connector), recorded as
    outcomes.record does."""
    n, left = len(the_pass.requests), [0] * len(the_pass.requests)
    done = Rewritten({}, {}, [])
    for part in parts_of(session, the_pass):
        done.removed.update(part.removed or {})
        done.purged.update(part.purged or {})
        done.skipped.extend(part.skipped or [])
        left = [a + b for a, b in zip(left, part.left_rows or [0] * n, strict=True)]
    erased = connector.outcomes(n, done)
    results: dict[str, Any] = {
        request_id: outcomes.Failed(f"{remaining} items still present after erasure", transient=True)
        if remaining and not outcome.exempt_reason else outcome
        for request_id, outcome, remaining in zip(the_pass.requests, erased, left, strict=True)
    }
    # each part recorded its files' hits before rewriting them; the snapshots' rows add up only here
    outcomes.record_hits_locked(session, the_pass.system, {r: o.snapshots for r, o in zip(the_pass.requests, erased,
                                                                                        strict=True)})
    the_pass.settled_at = utcnow()
    log.info("snapshot.pass_settled", system=the_pass.system, requests=n, parts=the_pass.parts)
    _traced(rt, session, the_pass, results)
    # the files each request's rows were removed from now: an earlier attempt's journal of them is superseded
    accounted = {r: frozenset(rel for rel, rows in done.removed.items() if rows[i])
                 for i, r in enumerate(the_pass.requests)}
    return outcomes.record_locked(rt, session, the_pass.system, results, accounted)


def fail_pass(rt: Runtime, session: Session, the_pass: SnapshotPass, part: SnapshotPart, error: str,
              transient: bool) -> Retries:
    """A part failed for good: its pass fails, every request's attempt with it (retried, if transient and
    attempts are left), the rows the pass did remove kept in each task's journal for the attempt after."""
    part.status, part.error = PartStatus.FAILED, error
    the_pass.error, the_pass.settled_at = error, utcnow()
    removed: dict[str, list[int]] = {}
    for each in parts_of(session, the_pass):
        if each.status in OPEN:
            each.status, each.lease_until = PartStatus.DROPPED, None
        removed |= {**(each.journal or {}), **(each.removed or {})}
    log.warning("snapshot.pass_failed", system=the_pass.system, part=part.id, error=error)
    failed: dict[str, Outcome | outcomes.Failed] = dict.fromkeys(the_pass.requests,
                                                                 outcomes.Failed(error, transient=transient))
    _traced(rt, session, the_pass, failed)
    retries = outcomes.record_locked(rt, session, the_pass.system, failed)
    tasks = session.scalars(select(SystemTask).where(SystemTask.request_id.in_(the_pass.requests),
                                                     SystemTask.system == the_pass.system))
    for task in tasks:
        i = the_pass.requests.index(task.request_id)
        kept = {rel: rows[i] for rel, rows in removed.items() if rows[i]}
        if kept and task.status in (SystemStatus.PENDING, SystemStatus.FAILED):
            task.progress = {**(task.progress or {}), **kept}
    return retries


def _traced(rt: Runtime, session: Session, the_pass: SnapshotPass, results: dict[str, Any]) -> None:
    """The pass's `erasure.system` span for each request, when tracing is on (the attempts read only then)."""
    def attempts() -> dict[str, int]:
        return {r: n for r, n in session.execute(select(SystemTask.request_id, SystemTask.attempts).where(
            SystemTask.request_id.in_(the_pass.requests), SystemTask.system == the_pass.system))}

    kind = next((s.kind for s in rt.config.systems if s.name == the_pass.system), "")
    tracing.spread_pass(the_pass.system, kind, the_pass.created_at, the_pass.parts, results, attempts)


def parts_of(session: Session, the_pass: SnapshotPass) -> list[SnapshotPart]:
    """The pass's parts, in order, locked (the pass's lock is held: no part of it is claimed meanwhile)."""
    return list(session.scalars(select(SnapshotPart).where(SnapshotPart.pass_id == the_pass.id)
                                .order_by(SnapshotPart.seq).with_for_update().execution_options(populate_existing=True)))


def renew(session: Session, the_pass: SnapshotPass, now: datetime, lease_seconds: int) -> None:
    """Keep the pass's requests' system tasks running: a lease with less than half of its length left
    runs from now again (most calls change no row)."""
    session.execute(update(SystemTask)
                    .where(SystemTask.request_id.in_(the_pass.requests), SystemTask.system == the_pass.system,
                           SystemTask.status == SystemStatus.RUNNING,
                           or_(SystemTask.lease_until.is_(None),
                               SystemTask.lease_until < now + timedelta(seconds=lease_seconds / 2)))
                    .values(lease_until=now + timedelta(seconds=lease_seconds))
                    .execution_options(synchronize_session=False))


def reconcile(rt: Runtime, grace: float) -> int:
    """Open passes kept alive: their requests' system tasks' leases renewed; parts whose worker vanished
    (lease lapsed) or whose message was lost (pending `grace` seconds past when it was due) sent again,
    and a part out of attempts failing its pass. How many parts were sent."""
    settings, now = rt.config.worker, utcnow()
    resend: list[int] = []
    retries: list[tuple[str, Retries]] = []
    with rt.transaction() as session:
        open_passes = session.scalars(select(SnapshotPass).where(SnapshotPass.settled_at.is_(None))
                                      .order_by(SnapshotPass.created_at).limit(LIMIT)
                                      .with_for_update(skip_locked=True)).all()
        for the_pass in open_passes:
            renew(session, the_pass, now, settings.lease_seconds)
            for part in parts_of(session, the_pass):
                if part.status == PartStatus.RUNNING and (part.lease_until is None or part.lease_until <= now):
                    log.warning("snapshot.part_lease_expired", system=the_pass.system, part=part.id,
                                attempt=part.attempts)
                    if part.attempts >= settings.max_attempts:
                        lost = f"gave up after {part.attempts} attempts: its worker's lease ran out"
                        retries.append((the_pass.system, fail_pass(rt, session, the_pass, part, lost, True)))
                        break
                    part.status, part.lease_until, part.queued_at = PartStatus.PENDING, None, now
                    resend.append(part.id)
                elif part.status == PartStatus.PENDING and (
                        part.queued_at is None or part.queued_at <= now - timedelta(seconds=grace)):
                    part.queued_at = now
                    resend.append(part.id)
    for part_id in resend:
        rt.dispatch.part(part_id)
    for system, each in retries:
        outcomes.send_retries(rt, system, each)
    return len(resend)
