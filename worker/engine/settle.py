"""Settling: once every system of a request has settled, the request completes (or fails), the
models that ate its data are flagged, and its suppression entry and guard list digests are written,
in the transaction that holds its row."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy.orm import Session

from worker import tracing
from worker.engine import guard_list, lineage, suppression
from worker.engine.state import move_request, nothing_found
from worker.runtime import Runtime
from worker.store.models import SETTLED, Request, RequestStatus, SystemStatus, utcnow

log = structlog.get_logger("erasure.pipeline")


def settle(rt: Runtime, request_id: str) -> bool:
    """Once every system has settled, settle the request and flag the models that ate its data;
    whether it moved. A completed request whose recheck of an exemption then failed for good turns failed."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, with_for_update=True)
        return request is not None and bool(settle_locked(rt, session, [request]))


def settle_locked(rt: Runtime, session: Session, requests: Sequence[Request]) -> list[Request]:
    """settle() for requests whose rows this transaction holds locked, their models flagged and their
    suppression entries and guard list digests written together; those that moved."""
    began = tracing.now()
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
    completed = [r for r in ready if r.status == RequestStatus.COMPLETED]
    guard_list.add(rt, session, completed)  # before keep drops the identifiers it hashes
    suppression.keep(rt, session, completed)
    tracing.settled(moved, began)
    return moved
