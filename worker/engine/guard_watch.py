"""The guard's watch: data that comes back is caught before the next training run.

A person erased (or objecting to training) can come back into a snapshot system after their request
settled: a fresh export from an app database restored from backup, a late partition, a replica's
copy. The watch, run by beat on the snapshot queue, lists every snapshot folder of every snapshot
system and checks against the guard list each folder it has not seen in that state before (new, or
with files added or removed since, by a digest of their names), as `erasure guard check --fix` does:
guarded rows are erased, the model versions already trained on the folder are flagged, and the catch
is recorded (audit event and warning `guard.caught`, with counts; the metric
`erasure_guard_caught_rows` sums them). What it saw of each folder is kept in `guard_looks`.

A look is bounded (`LIMIT` folders a pass, the oldest unseen first), so a first look at a large lake
spreads over passes. A Delta table has versions, not folders, and is not watched. A file rewritten in
place under its own name (a backup restored over a folder's file) leaves the names as they were: the
watch does not see it, and `erasure guard check` before training does."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select

from connectors.errors import ConnectorError, one_line
from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.connector import SnapshotConnector
from worker.engine import audit, guard_check
from worker.errors import ErasureError
from worker.runtime import Runtime
from worker.store.models import GuardLook, utcnow

log = structlog.get_logger("erasure.guard")
LIMIT = 20  # folders checked in one pass


@dataclass
class Looked:
    """What one pass of the watch did."""

    folders: int = 0  # snapshot folders listed
    checked: int = 0
    caught: dict[str, int] = field(default_factory=dict)  # snapshot -> guarded rows found
    failed: int = 0

    def to_json(self) -> dict[str, int]:
        """Counts for the log."""
        return {"folders": self.folders, "checked": self.checked, "caught": len(self.caught),
                "rows_caught": sum(self.caught.values()), "failed": self.failed}


def watched(rt: Runtime) -> list[SnapshotConfig]:
    """The snapshot systems the watch lists (all but Delta tables)."""
    return [s for s in rt.config.systems if isinstance(s, SnapshotConfig) and s.format != "delta"]


def look(rt: Runtime, limit: int = LIMIT) -> Looked:
    """Check the snapshot folders that are new or changed since the last look; erase what is guarded."""
    looked = Looked()
    with rt.transaction() as session:
        seen = {row.snapshot: row.files_digest for row in session.scalars(select(GuardLook))}
    due: list[tuple[SnapshotConfig, str, list[str], str]] = []
    for config in watched(rt):
        try:
            with SnapshotConnector(config) as connector:
                folders = connector.snapshots()
        except ConnectorError as exc:
            looked.failed += 1
            log.warning("guard.watch_failed", system=config.name, error=one_line(exc))
            continue
        looked.folders += len(folders)
        for folder, files in folders.items():
            snapshot, digest = f"{config.name}:{folder}", _digest(files)
            if seen.get(snapshot) != digest:
                due.append((config, snapshot, files, digest))
    due.sort(key=lambda d: (d[1] in seen, d[1]))  # folders never seen first
    for config, snapshot, files, digest in due[:limit]:
        try:
            checked = guard_check.check(rt, snapshot, fix=True)
        except (ConnectorError, ErasureError) as exc:
            looked.failed += 1
            log.warning("guard.watch_failed", system=config.name, snapshot=snapshot, error=one_line(exc))
            continue
        looked.checked += 1
        found = checked.found
        removed = 0 if checked.fixed is None else checked.fixed["rows_removed"]
        with rt.transaction() as session:
            row = session.get(GuardLook, snapshot) or GuardLook(snapshot=snapshot, system=config.name, rows_caught=0)
            row.files, row.files_digest, row.looked_at = len(files), digest, utcnow()
            row.rows_caught = (row.rows_caught or 0) + removed
            session.merge(row)
            if found.rows:
                audit.record(session, "guard.caught", None, config.name, snapshot=snapshot, rows=found.rows,
                             rows_removed=removed, requests=len(found.requests),
                             types={t: n for t, n in sorted(found.types.items())})
        if found.rows:
            looked.caught[snapshot] = found.rows
            log.warning("guard.caught", system=config.name, snapshot=snapshot, rows=found.rows, rows_removed=removed,
                        requests=len(found.requests), clean=checked.clean)
    return looked


def _digest(files: list[str]) -> str:
    """A folder's state as the watch sees it: its files' names."""
    return hashlib.sha256("\n".join(files).encode("utf-8", "surrogatepass")).hexdigest()
