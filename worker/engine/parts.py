"""Snapshot passes spread over workers: a pass over more files than one part holds is split into
parts (a file, or a few small ones, up to `snapshot_part_mb`), each a message on the snapshot queue
that any worker may take. A part claims its row with a lease, locates, rewrites (journaled into its
row before each swap) and verifies its files for every request of the pass, and records what it
did; the transaction that records the last part settles every request's outcome from all the parts,
as one process's pass would have (checked in the store, not by a chord). The requests' system tasks
stay running, their lease renewed, while the pass is open.

Rows are locked in one order everywhere: the pass, then its parts, then requests, then system tasks."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from connectors import redact
from connectors.base import Connector, Subject
from connectors.spreading import Rewritten, Splits, splits
from worker.engine import outcomes, part_passes
from worker.errors import PermanentError, TransientError, one_line
from worker.runtime import Runtime
from worker.store.models import PartStatus, Request, SnapshotPart, SnapshotPass, utcnow

log = structlog.get_logger("erasure.pipeline")
MB = 1024 * 1024


@dataclass(frozen=True)
class Done:
    """What a part did: its files' rewrites, each request's rows left in them, and the connector that
    tells the outcomes once every part is done."""

    connector: Splits
    rewritten: Rewritten
    left: list[int]


@dataclass(frozen=True)
class Claimed:
    """A part this process claimed: its pass's system and requests, its files and its lease."""

    part_id: int
    system: str
    requests: list[str]
    subjects: list[Subject]
    files: list[str]
    lease_until: datetime


def spread(rt: Runtime, system: str, connector: Connector, subjects: dict[str, Subject]) -> bool:
    """Split a claimed pass of a kind that splits (snapshot files) into parts sent to the snapshot queue,
    if it makes more than one; whether it did. Its requests' system tasks stay running until it settles."""
    spreads = splits(connector)
    if spreads is None or not subjects:
        return False
    try:
        files = spreads.split(int(rt.config.worker.snapshot_part_mb * MB))
    except Exception:  # noqa: BLE001 - the pass in one process meets it again, and records it
        return False
    if len(files) < 2:
        return False
    now, pass_id = utcnow(), str(uuid.uuid4())
    with rt.transaction() as session:
        session.add(SnapshotPass(id=pass_id, system=system, requests=list(subjects), parts=len(files), parts_done=0,
                                 created_at=now))
        session.flush()
        parts = [SnapshotPart(pass_id=pass_id, seq=seq, files=rels, status=PartStatus.PENDING, attempts=0,
                              queued_at=now) for seq, rels in enumerate(files)]
        session.add_all(parts)
        session.flush()
        ids = [part.id for part in parts]
    log.info("snapshot.spread", system=system, requests=len(subjects), parts=len(ids), files=sum(map(len, files)))
    for part_id in ids:
        rt.dispatch.part(part_id)
    return True


def run_part(rt: Runtime, part_id: int) -> None:
    """Claim one part, erase and verify its files for every request of its pass, and record it (settling
    the pass if it was the last). A copy of a message finds the part claimed or recorded and stops."""
    claimed = _claim(rt, part_id)
    if claimed is None:
        return
    connector = splits(rt.connector(claimed.system))
    result: Done | Exception
    try:
        if connector is None:  # the config gave the system another kind since the pass was spread
            raise PermanentError(f"system {claimed.system}: its kind does not spread a pass over parts")
        with redact.values(v for subject in claimed.subjects for v in subject.all_values()):
            ids, subjects, files = claimed.requests, claimed.subjects, claimed.files
            outcomes.record_hits(rt, claimed.system, dict(zip(ids, connector.locate_files(subjects, files),
                                                              strict=True)))
            journal = functools.partial(_journal, rt, part_id, claimed.lease_until)
            rewritten = connector.erase_files(subjects, files, journal)
            result = Done(connector, rewritten, connector.verify_files(subjects, files))
    except (TransientError, PermanentError) as exc:
        result = exc
    except Exception as exc:  # a bug in the connector: the pass fails, the worker goes on
        log.error("snapshot.part_crashed", system=claimed.system, part=part_id, error=type(exc).__name__)
        result = PermanentError(f"internal error ({type(exc).__name__})")
    _record(rt, claimed, result)


def _claim(rt: Runtime, part_id: int) -> Claimed | None:
    """The part, claimed with a lease if it is pending (or running on a lapsed lease with attempts left)
    and its pass open; None if it is not this process's to run."""
    now, settings = utcnow(), rt.config.worker
    with rt.transaction() as session:
        pass_id = session.scalar(select(SnapshotPart.pass_id).where(SnapshotPart.id == part_id))
        the_pass = None if pass_id is None else session.get(SnapshotPass, pass_id, with_for_update={"read": True})
        part = session.get(SnapshotPart, part_id, with_for_update=True, populate_existing=True)
        if the_pass is None or part is None or the_pass.settled_at is not None:
            return None
        lapsed = part.status == PartStatus.RUNNING and (part.lease_until is None or part.lease_until <= now)
        if not (part.status == PartStatus.PENDING or (lapsed and part.attempts < settings.max_attempts)):
            return None
        requests = {r.id: r for r in session.scalars(select(Request).where(Request.id.in_(the_pass.requests)))}
        # a request settled meanwhile (by a DPO) may hold no identifiers: it is sought by nothing
        subjects = [rt.subject(requests[r]) if requests[r].sealed_identifiers is not None else Subject({})
                    for r in the_pass.requests]
        part.status, part.attempts, part.error = PartStatus.RUNNING, part.attempts + 1, None
        part.lease_until = now + timedelta(seconds=settings.lease_seconds)
        part_passes.renew(session, the_pass, now, settings.lease_seconds)
        log.info("snapshot.part_claimed", system=the_pass.system, part=part_id, attempt=part.attempts)
        return Claimed(part_id, the_pass.system, list(the_pass.requests), subjects, list(part.files),
                       part.lease_until)


def _journal(rt: Runtime, part_id: int, lease_until: datetime, rel: str, rows: list[int]) -> None:
    """Before a rewritten file is swapped in, note in the part's row the rows it removes per request (as
    outcomes.journal does for a pass in one process); the swap is stopped if the part is no longer
    this process's or its pass was settled (failed by another part) meanwhile."""
    try:
        with rt.transaction() as session:
            pass_id = session.scalar(select(SnapshotPart.pass_id).where(SnapshotPart.id == part_id))
            the_pass = session.get(SnapshotPass, pass_id, with_for_update={"read": True})
            part = session.get(SnapshotPart, part_id, with_for_update=True, populate_existing=True)
            if (the_pass is None or the_pass.settled_at is not None or part is None
                    or part.status != PartStatus.RUNNING or part.lease_until != lease_until):
                raise outcomes.ClaimLost(f"part {part_id} was lost before {rel} was swapped in; another attempt "
                                         "erases it")
            part.journal = {**(part.journal or {}), rel: list(rows)}
    except SQLAlchemyError as exc:
        raise TransientError(f"store unavailable before swapping in {rel} ({type(exc).__name__})") from None


def _record(rt: Runtime, claimed: Claimed, result: Done | Exception) -> None:
    """What the part did (or its failure) in one transaction: a failure is retried with backoff or
    fails the pass; the last part settles it."""
    now, settings = utcnow(), rt.config.worker
    retries: part_passes.Retries = []
    again: float | None = None
    with rt.transaction() as session:
        the_pass = session.scalars(select(SnapshotPass).join(SnapshotPart, SnapshotPart.pass_id == SnapshotPass.id)
                                   .where(SnapshotPart.id == claimed.part_id).with_for_update(of=SnapshotPass)).one()
        part = session.get(SnapshotPart, claimed.part_id, with_for_update=True, populate_existing=True)
        if (part is None or the_pass.settled_at is not None or part.status != PartStatus.RUNNING
                or part.lease_until != claimed.lease_until):
            log.warning("snapshot.part_lost", system=claimed.system, part=claimed.part_id)
            return  # its lease ran out and another attempt took it, or another part failed the pass
        part.lease_until = None
        if isinstance(result, Exception):
            transient = isinstance(result, TransientError)
            part.error, part.transient = one_line(result), transient
            if transient and part.attempts < settings.max_attempts:
                again = settings.backoff(part.attempts)
                part.status, part.queued_at = PartStatus.PENDING, now + timedelta(seconds=again)
                log.warning("snapshot.part_retry", system=claimed.system, part=part.id, attempt=part.attempts,
                            in_seconds=round(again, 1))
            else:
                error = f"gave up after {part.attempts} attempts: {part.error}" if transient else part.error
                retries = part_passes.fail_pass(rt, session, the_pass, part, error, transient)
        else:
            done = result.rewritten
            journaled = {rel: rows for rel, rows in (part.journal or {}).items() if rel not in done.removed}
            part.removed, part.purged = {**journaled, **done.removed}, done.purged
            part.skipped, part.left_rows, part.status = done.skipped, result.left, PartStatus.DONE
            the_pass.parts_done += 1
            if the_pass.parts_done == the_pass.parts:
                retries = part_passes.settle(rt, session, the_pass, result.connector)
    if again is not None:
        rt.dispatch.part(claimed.part_id, countdown=again)
    outcomes.send_retries(rt, claimed.system, retries)
