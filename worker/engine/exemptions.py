"""Art. 17(3) exemptions decided by people: a system the config retains (`retain = { reason,
until }`), exempt without its connector being called and erased once the retention is over; and
one system of one request exempted by a DPO (`erasure exempt`), for good, with the reason given.
(Items a store keeps by its own lock are the connectors' exemptions: see Outcome.exempt_reason;
a system the config retains is made exempt by worker.engine.retention.)"""

from __future__ import annotations

from sqlalchemy import select

from worker.engine import settle
from worker.engine.flags import check_reason
from worker.engine.state import move_request, move_system
from worker.errors import InputError, NoSuchRequest, RefusedError
from worker.runtime import Runtime
from worker.store.models import Request, RequestStatus, SystemStatus, SystemTask, utcnow


def exempt(rt: Runtime, request_id: str, system: str, reason: str, by: str | None = None) -> str:
    """A DPO exempts one system of one request for good; refused once the system has been erased
    or found empty, and while a worker runs it (`by`: who, else "dpo", in the audit event).
    Returns the request's status after settling."""
    why = check_reason(reason)
    with rt.transaction() as session:
        request = session.get(Request, request_id, with_for_update=True)
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        task = session.scalar(select(SystemTask).where(SystemTask.request_id == request_id,
                                                       SystemTask.system == system).with_for_update())
        if task is None:
            names = ", ".join(t.system for t in request.systems)
            raise InputError(f"--system: request {request_id} has no system {system[:100]!r} (it has {names})")
        if task.status in (SystemStatus.ERASED, SystemStatus.NOT_FOUND):
            raise RefusedError(f"system {system} of request {request_id} is already {task.status}: "
                               "there is nothing left to exempt")
        if task.status == SystemStatus.SKIPPED:
            raise RefusedError(f"system {system} of request {request_id} is skipped ({task.reason}): "
                               "it is not erased for this request, so there is nothing to exempt")
        if task.status == SystemStatus.RUNNING:
            raise RefusedError(f"system {system} of request {request_id} is being erased right now: "
                               "try again once it has settled")
        move_system(task, SystemStatus.EXEMPT, reason=why, recheck_at=None, error=None, lease_until=None,
                    finished_at=utcnow(), audit_data={"by": by or "dpo"})
        if request.status == RequestStatus.FAILED and all(t.status != SystemStatus.FAILED for t in request.systems):
            move_request(request, RequestStatus.IN_PROGRESS, error=None)  # to settle again, as completed
    settle.settle(rt, request_id)
    with rt.transaction() as session:
        settled = session.get(Request, request_id)
        return settled.status if settled is not None else RequestStatus.FAILED
