"""What the worker's tests erase from: clickstream snapshots, a retention."""


from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import update

from tests.helpers.config import system_table
from worker.runtime import Runtime
from worker.store.models import SystemTask

OCT, NOV, DEC = "clickstream:2026-10-01", "clickstream:2026-11-01", "clickstream:2026-12-01"
TAX = {"reason": "kept 10 years for tax law", "until": "2035-12-31"}  # a retention that has not ended


def write_snapshot(path: Path, user_ids: list[int]) -> None:
    """A tiny Parquet file of clicks, one event per user id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"user_id": pa.array(user_ids, pa.int64()),
                      "event": [f"click-{i}" for i in range(len(user_ids))]})
    pq.write_table(table, path)


def snapshot_system(location: Path) -> str:
    """The TOML of the `clickstream` snapshot system over a local folder of Parquet files."""
    return system_table("clickstream", "snapshot", location=str(location), format="parquet",
                        where={"user_id": "user_id"})


def pass_the_retention(rt: Runtime, request_id: str, system: str) -> None:
    """Time moves past the retention's end: its recheck time is now in the past."""
    with rt.transaction() as session:
        session.execute(update(SystemTask).where(SystemTask.request_id == request_id, SystemTask.system == system)
                        .values(recheck_at=datetime.now(UTC) - timedelta(seconds=1)))
