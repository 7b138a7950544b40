"""Art. 17(3) retention decided by the config: a system retained (`retain = { reason, until }`) is
exempt without its connector being called, and erased once the retention is over."""

from __future__ import annotations

from datetime import datetime

from worker.config import Config
from worker.engine.state import move_system
from worker.store.models import SystemStatus, SystemTask


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
