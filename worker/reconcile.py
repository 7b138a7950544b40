"""The reconciler: a periodic pass over the store that puts work back on the queue when
nothing else will. Today: exempt systems whose lock has ended are erased again."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy import select

from worker.runtime import Runtime
from worker.state import move_system
from worker.store.models import SystemStatus, SystemTask

log = structlog.get_logger("erasure.reconcile")
BATCH = 500


def recheck_exemptions(rt: Runtime) -> int:
    """Send exempt systems whose recheck time has come back to the queue; how many."""
    due = []
    with rt.transaction() as session:
        tasks = session.scalars(
            select(SystemTask)
            .where(SystemTask.status == SystemStatus.EXEMPT, SystemTask.recheck_at <= datetime.now(UTC))
            .order_by(SystemTask.recheck_at).limit(BATCH).with_for_update(skip_locked=True)
        ).all()
        for task in tasks:
            move_system(task, SystemStatus.PENDING, recheck_at=None)
            due.append((task.request_id, task.system, task.kind))
    for request_id, system, kind in due:
        log.info("system.recheck", request_id=request_id, system=system)
        rt.dispatch.erase(request_id, system, kind)
    return len(due)


def reconcile(rt: Runtime) -> dict[str, int]:
    """One pass of every reconciliation step; counts by step."""
    return {"rechecked": recheck_exemptions(rt)}
