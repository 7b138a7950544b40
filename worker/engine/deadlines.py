"""Deadlines: one extension of up to two months (Art. 12(3)), the warning once a request is
overdue, and the counts a DPO dashboard shows. A request stays open until it completes: a
failed one still owes the subject an answer, so it can be extended and can be overdue."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, func, select

from worker.config import add_months
from worker.engine import audit
from worker.engine.intake import clean_text
from worker.errors import InputError, NoSuchRequest, RefusedError
from worker.runtime import Runtime
from worker.store.models import Request, RequestStatus, utcnow

log = structlog.get_logger("erasure.deadlines")
OPEN = (RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS, RequestStatus.FAILED)
EXTENSION_MONTHS = (1, 2)
DUE_SOON_DAYS = 7
BATCH = 500


def overdue(now: datetime) -> ColumnElement[bool]:
    """Requests still open whose deadline has passed."""
    return and_(Request.status.in_(OPEN), Request.deadline < now)


def is_overdue(request: Request, now: datetime) -> bool:
    """Whether one request is still open past its deadline."""
    return request.status in OPEN and request.deadline < now


def extend(rt: Runtime, request_id: str, months: int, reason: str, by: str | None = None) -> Request:
    """Move an open request's deadline by calendar months from the one it had, once, before it passes
    (`by`, who decided, into the audit event)."""
    if months not in EXTENSION_MONTHS:
        raise InputError("--months: 1 or 2 (Art. 12(3) allows up to two further months)")
    reason = clean_text("--reason", reason) or ""
    now = utcnow()
    with rt.transaction() as session:
        request = session.get(Request, request_id, with_for_update=True)
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        if request.extended_at is not None:
            raise RefusedError(f"request {request_id} was already extended by {request.extended_months} month(s) "
                               f"on {request.extended_at:%Y-%m-%d}: Art. 12(3) allows one extension")
        if request.status == RequestStatus.COMPLETED:
            raise RefusedError(f"request {request_id} is completed: there is no deadline left to extend")
        if request.deadline <= now:
            raise RefusedError(f"request {request_id} passed its deadline on {request.deadline:%Y-%m-%d}: "
                               "an extension must be decided before the deadline")
        request.original_deadline, request.deadline = request.deadline, add_months(request.deadline, months)
        request.extended_months, request.extended_reason, request.extended_at = months, reason, now
        audit.record(session, "request.extended", request_id, months=months, reason=reason, by=by,
                     deadline=audit.stamp(request.deadline), original_deadline=audit.stamp(request.original_deadline))
    # the reason is the DPO's free text: kept in the store, never logged
    log.info("request.extended", request_id=request_id, subject_ref=request.subject_ref, months=months,
             deadline=request.deadline.isoformat())
    return request


def warn_overdue(rt: Runtime) -> int:
    """Log `request.overdue` for each open request past its deadline that has not had it yet; how many.
    The time of the warning is kept with the request, so it is logged once across passes and workers."""
    now = utcnow()
    with rt.transaction() as session:
        late = session.scalars(
            select(Request).where(overdue(now), Request.overdue_warned_at.is_(None))
            .order_by(Request.deadline).limit(BATCH).with_for_update(skip_locked=True)
        ).all()
        for request in late:
            request.overdue_warned_at = now
            # logged before the commit: should the commit fail, the next pass warns again
            log.warning("request.overdue", request_id=request.id, subject_ref=request.subject_ref,
                        status=request.status, deadline=request.deadline.isoformat(),
                        extended=request.extended_at is not None)
        return len(late)


def stats(rt: Runtime, due_within_days: int | None = None) -> dict[str, Any]:
    """Counts for a dashboard: open requests overdue and due within a number of days, requests by status."""
    due_within_days = DUE_SOON_DAYS if due_within_days is None else due_within_days
    if not 1 <= due_within_days <= 92:
        raise InputError("--due-within: a number of days between 1 and 92")
    now = utcnow()
    due_soon = and_(Request.status.in_(OPEN), Request.deadline >= now,
                    Request.deadline < now + timedelta(days=due_within_days))
    with rt.transaction() as session:
        counted = {s: n for s, n in session.execute(select(Request.status, func.count()).group_by(Request.status))}
        late = session.scalar(select(func.count()).select_from(Request).where(overdue(now))) or 0
        soon = session.scalar(select(func.count()).select_from(Request).where(due_soon)) or 0
    return {"overdue": late, "due_soon": soon, "due_within_days": due_within_days,
            "by_status": {status.value: counted.get(status, 0) for status in RequestStatus}}
