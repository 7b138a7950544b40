"""Every status change goes through here: allowed transitions, recorded as log events."""

from __future__ import annotations

from typing import Any

import structlog

from worker.store.models import Request, RequestStatus, SystemStatus, SystemTask

log = structlog.get_logger("erasure.state")

S, R = SystemStatus, RequestStatus
SYSTEM_MOVES: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RUNNING, S.FAILED, S.EXEMPT}),
    S.RUNNING: frozenset({S.RUNNING, S.PENDING, S.ERASED, S.NOT_FOUND, S.FAILED, S.EXEMPT}),
    S.FAILED: frozenset({S.PENDING}),
    S.EXEMPT: frozenset({S.PENDING}),
    S.ERASED: frozenset(),
    S.NOT_FOUND: frozenset(),
}
REQUEST_MOVES: dict[str, frozenset[str]] = {
    R.RECEIVED: frozenset({R.IN_PROGRESS, R.FAILED}),
    R.IN_PROGRESS: frozenset({R.COMPLETED, R.FAILED}),
    R.FAILED: frozenset({R.RECEIVED, R.IN_PROGRESS}),
    R.COMPLETED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A status change the state machine does not allow: a bug, never user input."""


def move_system(task: SystemTask, to: SystemStatus, **fields: Any) -> None:
    """Change one system's status (and fields) if the move is allowed, and log it."""
    if to not in SYSTEM_MOVES[task.status]:
        raise IllegalTransition(f"system {task.system}: {task.status} -> {to}")
    before, task.status = task.status, to
    for name, value in fields.items():
        setattr(task, name, value)
    level = log.warning if to == S.FAILED else log.info
    level(f"system.{to}", request_id=task.request_id, system=task.system, kind=task.kind,
          attempt=task.attempts, previous=before, items=task.items_erased, error=task.error)


def move_request(request: Request, to: RequestStatus, **fields: Any) -> None:
    """Change one request's status (and fields) if the move is allowed, and log it."""
    if to not in REQUEST_MOVES[request.status]:
        raise IllegalTransition(f"request {request.id}: {request.status} -> {to}")
    before, request.status = request.status, to
    for name, value in fields.items():
        setattr(request, name, value)
    level = log.warning if to == R.FAILED else log.info
    level(f"request.{to}", request_id=request.id, subject_ref=request.subject_ref, previous=before)
