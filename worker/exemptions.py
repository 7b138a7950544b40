"""Art. 17(3) exemptions decided by people: a system the config retains (`retain = { reason,
until }`), exempt without its connector being called and erased once the retention is over; and
one system of one request exempted by a DPO (`erasure exempt`), for good, with the reason given.
(Items a store keeps by its own lock are the connectors' exemptions: see Outcome.exempt_reason.)"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from worker.config import Config
from worker.errors import InputError, NoSuchRequest, RefusedError
from worker.flags import check_reason
from worker.runtime import Runtime
from worker.state import move_request, move_system
from worker.store.models import Request, RequestStatus, SystemStatus, SystemTask, utcnow


def exempt_if_retained(config: Config, task: SystemTask, now: datetime) -> bool:
    """Make a pending system exempt if the config retains it now, with the reason and a recheck
    when the retention ends (the reconciler then sends it to be erased); whether it did."""
    try:
        retain = config.system(task.system).retain
    except KeyError:  # a system no longer configured: left to the pipeline to fail
        return False
    if task.status != SystemStatus.PENDING or retain is None or not retain.holds(now):
        return False
    move_system(task, SystemStatus.EXEMPT, reason=retain.describe(), recheck_at=retain.ends_at, lease_until=None,
                evidence={**(task.evidence or {}), "retained": retain.to_json()}, finished_at=now,
                audit_data={"by": "config"})
    return True


def exempt(rt: Runtime, request_id: str, system: str, reason: str) -> str:
    """A DPO exempts one system of one request for good; refused once the system has been erased
    or found empty, and while a worker runs it. Returns the request's status after settling."""
    from worker import pipeline

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
        if task.status == SystemStatus.RUNNING:
            raise RefusedError(f"system {system} of request {request_id} is being erased right now: "
                               "try again once it has settled")
        move_system(task, SystemStatus.EXEMPT, reason=why, recheck_at=None, error=None, lease_until=None,
                    finished_at=utcnow(), audit_data={"by": "dpo"})
        if request.status == RequestStatus.FAILED and all(t.status != SystemStatus.FAILED for t in request.systems):
            move_request(request, RequestStatus.IN_PROGRESS, error=None)  # to settle again, as completed
    pipeline.settle(rt, request_id)
    with rt.transaction() as session:
        settled = session.get(Request, request_id)
        return settled.status if settled is not None else RequestStatus.FAILED
