"""Every status change goes through here: allowed transitions, recorded as log events and as
audit events in the transaction of the row that moves."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import structlog
from sqlalchemy.orm import Session, object_session

from worker.engine import audit
from worker.store.models import Request, RequestStatus, SystemStatus, SystemTask

log = structlog.get_logger("erasure.state")

S, R = SystemStatus, RequestStatus
SYSTEM_MOVES: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RUNNING, S.FAILED, S.EXEMPT}),
    S.RUNNING: frozenset({S.RUNNING, S.PENDING, S.ERASED, S.NOT_FOUND, S.FAILED, S.EXEMPT}),
    S.FAILED: frozenset({S.PENDING, S.EXEMPT}),  # exempt: a DPO's decision (erasure exempt)
    S.EXEMPT: frozenset({S.PENDING, S.EXEMPT}),
    S.ERASED: frozenset(),
    S.NOT_FOUND: frozenset(),
    # created so at intake, out of the request's scope (record_skipped): never sent, never moves
    S.SKIPPED: frozenset(),
}
REQUEST_MOVES: dict[str, frozenset[str]] = {
    R.RECEIVED: frozenset({R.IN_PROGRESS, R.FAILED}),
    R.IN_PROGRESS: frozenset({R.COMPLETED, R.FAILED}),
    R.FAILED: frozenset({R.RECEIVED, R.IN_PROGRESS}),
    R.COMPLETED: frozenset({R.FAILED}),  # a recheck of an exempt system failed for good
}


class Pending(NamedTuple):
    """A system of a request waiting for its erase message."""

    request_id: str
    system: str
    kind: str


def nothing_found(request: Request) -> bool:
    """Whether a request completed with every system it looked in `not_found`: each looked and found
    nothing, so nothing was erased (the identifier may be wrong). An exempt system kept what it found
    or was never searched, and an erased one found something: a request with either is not this. A
    skipped system (out of the request's scope) never looked: it does not count, either way."""
    looked = [task.status for task in request.systems if task.status != S.SKIPPED]
    return request.status == R.COMPLETED and bool(looked) and all(status == S.NOT_FOUND for status in looked)


def record_skipped(session: Session, request_id: str, system: str, kind: str, reason: str) -> None:
    """A system recorded `skipped` at intake, out of the request's scope (never sent, never touched):
    logged and audited as every status move is, in the transaction that records it."""
    log.info("system.skipped", request_id=request_id, system=system, kind=kind, reason=reason)
    audit.record(session, "system.skipped", request_id, system, attempt=0, reason=reason)


class IllegalTransition(RuntimeError):
    """A status change the state machine does not allow: a bug, never user input."""


def move_system(task: SystemTask, to: SystemStatus, *, audit_data: Mapping[str, Any] | None = None,
                **fields: Any) -> None:
    """Change one system's status (and fields) if the move is allowed; log it and audit it
    (with `audit_data` added: who decided, for instance). An error's text stays out of the
    audit trail, which cannot be erased: the store keeps it with the system."""
    previous = _move(task, to, SYSTEM_MOVES, f"system {task.system}", fields)
    _log(f"system.{to}", to == S.FAILED, request_id=task.request_id, system=task.system, kind=task.kind,
         attempt=task.attempts, previous=previous, items=task.items_erased, error=task.error)
    settled = to in (S.ERASED, S.NOT_FOUND, S.EXEMPT)
    _audit(task, f"system.{to}", task.request_id, task.system, previous=previous, attempt=task.attempts,
           items=task.items_erased if settled else None, reason=task.reason if to == S.EXEMPT else None,
           recheck_at=audit.stamp(task.recheck_at) if to == S.EXEMPT else None,
           evidence_sha256=audit.digest(task.evidence) if settled and task.evidence else None, **(audit_data or {}))


def lose_attempt(task: SystemTask, max_attempts: int, now: datetime) -> bool:
    """A running system whose worker's lease ran out: the lost attempt counts. Back to pending
    (True), or failed for good if it was the last attempt (False)."""
    log.warning("system.lease_expired", request_id=task.request_id, system=task.system, attempt=task.attempts)
    lost = f"attempt {task.attempts} lost: its worker's lease ran out"
    if task.attempts >= max_attempts:
        move_system(task, S.FAILED, error=f"gave up after {task.attempts} attempts: {lost}",
                    lease_until=None, finished_at=now, audit_data={"lost": "lease"})
        return False
    move_system(task, S.PENDING, error=lost, lease_until=None, audit_data={"lost": "lease"})
    return True


def move_request(request: Request, to: RequestStatus, **fields: Any) -> None:
    """Change one request's status (and fields) if the move is allowed, and log it."""
    previous = _move(request, to, REQUEST_MOVES, f"request {request.id}", fields)
    _log(f"request.{to}", to == R.FAILED, request_id=request.id, subject_ref=request.subject_ref,
         previous=previous)
    _audit(request, f"request.{to}", request.id, None, previous=previous)


def _move(row: Request | SystemTask, to: str, moves: dict[str, frozenset[str]], name: str,
          fields: dict[str, Any]) -> str:
    if to not in moves[row.status]:
        raise IllegalTransition(f"{name}: {row.status} -> {to}")
    previous, row.status = row.status, to
    for field, value in fields.items():
        setattr(row, field, value)
    return previous


def _log(event: str, failed: bool, **fields: Any) -> None:
    (log.warning if failed else log.info)(event, **fields)


def _audit(row: Request | SystemTask, type_: str, request_id: str, system: str | None, **data: Any) -> None:
    """An audit event in the row's own transaction (a row in none is not being saved: nothing to audit)."""
    session = object_session(row)
    if session is not None:
        audit.record(session, type_, request_id, system, **data)
