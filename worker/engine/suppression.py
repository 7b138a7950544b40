"""The suppression list and `erasure replay`.

Restoring a backup brings back the data of everyone erased since it was taken. The suppression
list is what lets a team erase them again: for each completed request, its identifiers sealed
under their own key (not the identifiers key) and the systems they were erased from. Once a
request is completed and no exemption waits to end, the request forgets its identifiers and this
entry is all that is kept. Replay re-applies those erasures to one restored system; it is audited
per request, and idempotent: a second replay finds nothing left to erase.

A system that was exempt (Art. 17(3)) or failed for a request is not in its entry: replay never
erases what the original request did not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors import redact
from connectors.base import Connector, Subject, every_one
from worker import keys
from worker.engine import audit
from worker.errors import InputError, PermanentError, TransientError, one_line
from worker.runtime import Runtime
from worker.store.models import Request, RequestStatus, Suppression, SystemStatus

log = structlog.get_logger("erasure.suppression")
REPLAYED = (SystemStatus.ERASED, SystemStatus.NOT_FOUND)


def keep(rt: Runtime, session: Session, requests: Sequence[Request]) -> None:
    """Write (or widen) the suppression entry of each completed request, and drop the request's own
    identifiers unless an exemption with an end still needs them for its recheck."""
    requests = [r for r in requests if r.status == RequestStatus.COMPLETED and r.sealed_identifiers is not None]
    if not requests:
        return
    entries = {e.request_id: e for e in session.scalars(
        select(Suppression).where(Suppression.request_id.in_([r.id for r in requests])))}
    for request in requests:
        subject = rt.subject(request)
        erased = sorted(t.system for t in request.systems if t.status in REPLAYED)
        sealed = rt.keyring.seal(keys.SUPPRESSION, request.id, subject.identifiers)
        entry = entries.get(request.id)
        if entry is None:
            session.add(Suppression(request_id=request.id, completed_at=request.completed_at, systems=erased,
                                    sealed=sealed))
        else:
            entry.systems, entry.sealed = erased, sealed
        if any(task.recheck_at is not None for task in request.systems):
            continue
        request.sealed_identifiers = None
        audit.record(session, "request.identifiers_dropped", request.id, kept_for_replay=erased)
        log.info("request.identifiers_dropped", request_id=request.id, kept_for_replay=erased)


@dataclass(frozen=True)
class Replayed:
    """What one replay did."""

    system: str
    since: str | None
    requests: int
    items_erased: int
    still_present: int

    def to_json(self) -> dict[str, object]:
        """For `erasure replay --json`."""
        return {"system": self.system, "since": self.since, "requests": self.requests,
                "items_erased": self.items_erased, "still_present": self.still_present}


def replay(rt: Runtime, system: str, since: datetime | None = None) -> Replayed:
    """Erase again, from one restored system, every subject whose completed erasure covered it
    (since a date: the restored backup's); one connector pass per batch of `batch_size`."""
    try:
        settings = rt.config.system(system)
    except KeyError:
        raise InputError(f"--system: no system named {system!r} in {rt.config.path}") from None
    if settings.kind == "manual":
        raise InputError(f"--system: {system} is erased by hand: after its restore, ask the person who keeps it to "
                         "erase again the subjects of the requests it settled (`erasure list --json`)")
    with rt.transaction() as session:
        query = select(Suppression).order_by(Suppression.completed_at, Suppression.request_id)
        if since is not None:
            query = query.where(Suppression.completed_at >= since)
        entries = [e for e in session.scalars(query) if system in e.systems]
    connector = rt.connector(system)
    erased = present = 0
    size = max(1, rt.config.worker.batch_size)
    for start in range(0, len(entries), size):
        chunk = entries[start:start + size]
        subjects = [Subject.from_json(rt.keyring.open(keys.SUPPRESSION, e.request_id, e.sealed)) for e in chunk]
        kept = [(e, s) for e, s in zip(chunk, subjects, strict=True) if settings.problem_with(s) is None]
        erased_here, present_here = _pass(rt, system, connector, kept)
        erased, present = erased + erased_here, present + present_here
    done = Replayed(system, since.date().isoformat() if since else None, len(entries), erased, present)
    log.info("replay.done", **done.to_json())
    return done


Batch = Sequence[tuple[Suppression, Subject]]


def _pass(rt: Runtime, system: str, connector: Connector, batch: Batch) -> tuple[int, int]:
    if not batch:
        return 0, 0
    subjects = [s for _, s in batch]
    with redact.values(v for s in subjects for v in s.all_values()):
        try:
            outcomes = every_one(connector.erase_many(subjects))
            left = connector.verify_many(subjects)
        except (TransientError, PermanentError) as exc:
            raise ReplayStopped(f"replay on {system} stopped: {one_line(exc)}; run it again, it is idempotent") \
                from None
    with rt.transaction() as session:
        for (entry, _), outcome, remaining in zip(batch, outcomes, left, strict=True):
            audit.record(session, "request.replayed", entry.request_id, system, items=outcome.items_erased,
                         still_present=remaining or None, exempt=outcome.exempt_reason)
            log.info("request.replayed", request_id=entry.request_id, system=system, items=outcome.items_erased,
                     still_present=remaining)
    return sum(o.items_erased for o in outcomes), sum(left)


class ReplayStopped(PermanentError):
    """A replay that could not finish; what it did is audited, and running it again is safe."""
