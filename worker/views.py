"""The read side: a request as the status JSON of the contract, and lists of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from worker.errors import InputError, NoSuchRequest
from worker.runtime import Runtime
from worker.store.models import ModelFlag, Request, RequestStatus, utcnow

LIST_LIMIT = 1000


def timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the contract writes times."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def request_json(request: Request, flags: list[ModelFlag]) -> dict[str, Any]:
    """One request in the contract's status shape."""
    return {
        "request_id": request.id,
        "status": request.status,
        "received_at": timestamp(request.received_at),
        "deadline": timestamp(request.deadline),
        "completed_at": timestamp(request.completed_at),
        "subject_ref": request.subject_ref,
        "requested_by": request.requested_by,
        "error": request.error,
        "systems": [
            {
                "system": t.system, "kind": t.kind, "status": t.status, "attempts": t.attempts,
                "items_erased": t.items_erased, "error": t.error, "reason": t.reason,
                "finished_at": timestamp(t.finished_at),
            }
            for t in request.systems
        ],
        "flagged_models": [
            {"model": f.model, "version": f.version, "snapshots": f.snapshots}
            for f in sorted(flags, key=lambda f: (f.model, f.version))
        ],
    }


def status(rt: Runtime, request_id: str) -> dict[str, Any]:
    """The status object of one request (NoSuchRequest if unknown)."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, options=[selectinload(Request.systems)])
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        flags = list(session.scalars(select(ModelFlag).where(ModelFlag.request_id == request_id)))
        return request_json(request, flags)


def evidence(rt: Runtime, request_id: str) -> dict[str, Any]:
    """Each system's evidence for one request, by system name."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, options=[selectinload(Request.systems)])
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        return {t.system: t.evidence for t in request.systems}


def listing(rt: Runtime, status: str | None = None, overdue: bool = False) -> list[dict[str, Any]]:
    """Requests, newest first, optionally by status or past their deadline and unsettled."""
    if status is not None and status not in set(RequestStatus):
        raise InputError(f"--status: one of {', '.join(RequestStatus)}")
    query = select(Request).options(selectinload(Request.systems))
    if status is not None:
        query = query.where(Request.status == status)
    if overdue:
        query = query.where(Request.deadline < utcnow(),
                            Request.status.in_([RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS]))
    query = query.order_by(Request.received_at.desc(), Request.id.desc()).limit(LIST_LIMIT)
    with rt.transaction() as session:
        requests = session.scalars(query).all()
        ids = [r.id for r in requests]
        flags: dict[str, list[ModelFlag]] = {}
        for flag in session.scalars(select(ModelFlag).where(ModelFlag.request_id.in_(ids))) if ids else []:
            flags.setdefault(flag.request_id, []).append(flag)
        return [request_json(r, flags.get(r.id, [])) for r in requests]
