"""Snapshot passes spread over parts: each part erased on its own (here in one process, in any order),
the pass settled by the last part recorded, and every request's outcome, counts and evidence what
one process's pass over the same files gives."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select, update

from connectors.snapshot.connector import SnapshotConnector
from tests.helpers import MakeRuntime, drain, snapshot_system, write_snapshot
from worker.engine import fanout, intake, parts, reconcile
from worker.errors import PermanentError, TransientError
from worker.runtime import Runtime
from worker.store.models import PartStatus, SnapshotHit, SnapshotPart, SnapshotPass, SystemTask, utcnow
from worker.surfaces import views

USERS = (2, 5, 9)  # erased; every other user's rows stay
SPREAD = {"batch_wait_seconds": 0, "snapshot_part_mb": 0}  # a part per file
ONE_PROCESS = {"batch_wait_seconds": 0}  # the files fit one part: today's pass in one process


def twelve_files(root: Path) -> None:
    """Twelve Parquet files in two snapshots; users 2, 5 and 9 in some of them, some twice in a file."""
    for i in range(12):
        users = [100 + i, 2 if i % 3 == 0 else 101, 5 if i % 4 == 1 else 102, 9, 9] if i < 7 else [200 + i, 5]
        write_snapshot(root / f"2026-{10 + i // 6}-01" / f"part-{i:02}.parquet", users)


def submitted(rt: Runtime) -> list[str]:
    """One request per erased user, submitted together (one pass takes them all)."""
    return [intake.submit(rt, {"user_id": str(user)}).request_id for user in USERS]


def settled(rt: Runtime, request_ids: list[str]) -> list[tuple[Any, ...]]:
    """Each request's system outcome as the status shows it, its evidence and its snapshot hits."""
    found = []
    for request_id in request_ids:
        system = views.status(rt, request_id)["systems"][0]
        with rt.transaction() as session:
            hits = sorted((h.snapshot, h.rows, tuple(h.files)) for h in session.scalars(
                select(SnapshotHit).where(SnapshotHit.request_id == request_id)))
        found.append((system["status"], system["items_erased"], views.evidence(rt, request_id)["clickstream"], hits))
    return found


def left_rows(root: Path) -> dict[str, list[int]]:
    """Each file's user ids."""
    return {p.relative_to(root).as_posix(): pq.read_table(p).column("user_id").to_pylist()
            for p in sorted(root.glob("*/*.parquet"))}


@pytest.fixture
def one_process(make_runtime: MakeRuntime, tmp_path: Path) -> tuple[list[tuple[Any, ...]], dict[str, list[int]]]:
    """What one process's pass over the twelve files gives each request, and the files it leaves."""
    root = tmp_path / "reference"
    twelve_files(root)
    rt = make_runtime(snapshot_system(root), store_url=f"sqlite:///{tmp_path}/reference.db", worker=ONE_PROCESS)
    request_ids = submitted(rt)
    drain(rt)
    with rt.transaction() as session:
        assert session.scalar(select(SnapshotPass.id)) is None
    return settled(rt, request_ids), left_rows(root)


def spread_world(make_runtime: MakeRuntime, tmp_path: Path) -> tuple[Runtime, Path, list[int]]:
    """The same files under a config that spreads them, the requests submitted and the pass spread; the
    parts' ids, their messages held back for the test to run."""
    root = tmp_path / "clickstream"
    twelve_files(root)
    rt = make_runtime(snapshot_system(root), worker=SPREAD)
    held: list[int] = []
    rt.dispatch.part = lambda part_id, countdown=None: held.append(part_id)  # type: ignore[method-assign]
    submitted(rt)
    drain(rt)
    assert len(held) == 12
    return rt, root, held


def request_ids(rt: Runtime) -> list[str]:
    with rt.transaction() as session:
        return list(session.scalar(select(SnapshotPass.requests)) or [])


def test_a_spread_pass_gives_each_request_what_one_process_gives(make_runtime: MakeRuntime, tmp_path: Path,
                                                                 one_process: Any) -> None:
    """Twelve parts, run in order: the same statuses, counts, evidence, hits and files as one pass."""
    rt, root, held = spread_world(make_runtime, tmp_path)
    for part_id in held:
        parts.run_part(rt, part_id)
    drain(rt)
    assert (settled(rt, request_ids(rt)), left_rows(root)) == one_process
    with rt.transaction() as session:
        assert session.scalars(select(SnapshotPart.status)).all() == [PartStatus.DONE] * 12
        assert session.scalar(select(SnapshotPass.settled_at)) is not None


def test_parts_recorded_out_of_order_settle_with_the_last(make_runtime: MakeRuntime, tmp_path: Path,
                                                          one_process: Any) -> None:
    """Parts run last first: the requests stay running until the last part is recorded, then settle alike."""
    rt, root, held = spread_world(make_runtime, tmp_path)
    for part_id in reversed(held[1:]):
        parts.run_part(rt, part_id)
    with rt.transaction() as session:
        assert set(session.scalars(select(SystemTask.status))) == {"running"}
    parts.run_part(rt, held[0])
    parts.run_part(rt, held[0])  # a copy of a message: the part is done, nothing changes
    drain(rt)
    assert (settled(rt, request_ids(rt)), left_rows(root)) == one_process


def test_a_part_killed_after_its_swaps_is_redone_alone_and_counted_once(make_runtime: MakeRuntime, tmp_path: Path,
                                                                        one_process: Any) -> None:
    """A part whose process dies after swapping its file in and before recording: its lease lapses, the
    reconciler sends it again, the redo finds the file done and counts it from the journal; the other
    parts are not run again."""
    rt, root, held = spread_world(make_runtime, tmp_path)
    connector = rt.connector("clickstream")
    assert isinstance(connector, SnapshotConnector)
    erase_files = connector.erase_files

    def dies_after_the_swap(subjects: Any, files: Any, journal: Any = None) -> Any:
        erase_files(subjects, files, journal)
        raise SystemExit("killed")  # no Exception: nothing in the process records it

    connector.erase_files = dies_after_the_swap  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        parts.run_part(rt, held[0])
    connector.erase_files = erase_files  # type: ignore[method-assign]
    for part_id in held[1:]:
        parts.run_part(rt, part_id)
    with rt.transaction() as session:
        session.execute(update(SnapshotPart).where(SnapshotPart.id == held[0])
                        .values(lease_until=utcnow() - timedelta(seconds=1)))
    del rt.dispatch.part  # sent again, drained below  # type: ignore[attr-defined]
    assert reconcile.reconcile(rt)["parts_resent"] == 1
    drain(rt)
    assert (settled(rt, request_ids(rt)), left_rows(root)) == one_process
    with rt.transaction() as session:
        attempts = dict(session.execute(select(SnapshotPart.id, SnapshotPart.attempts)).all())
    assert attempts == {part_id: 2 if part_id == held[0] else 1 for part_id in held}


def test_the_reconciler_keeps_an_open_pass_s_requests_running(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """While parts are left, the requests' leases are renewed, not expired and sent again."""
    rt, _, held = spread_world(make_runtime, tmp_path)
    with rt.transaction() as session:
        session.execute(update(SystemTask).values(lease_until=utcnow() - timedelta(seconds=1)))
    done = reconcile.reconcile(rt)
    assert done["leases_expired"] == 0
    with rt.transaction() as session:
        assert set(session.scalars(select(SystemTask.status))) == {"running"}
        assert all(lease > utcnow() for lease in session.scalars(select(SystemTask.lease_until)))


def test_a_part_failing_transiently_is_retried(make_runtime: MakeRuntime, tmp_path: Path, one_process: Any) -> None:
    """A blip in one part: that part alone is sent again, with a countdown, and the pass settles as usual."""
    rt, root, held = spread_world(make_runtime, tmp_path)
    connector = rt.connector("clickstream")
    assert isinstance(connector, SnapshotConnector)
    erase_files, blips = connector.erase_files, []

    def blips_once(subjects: Any, files: Any, journal: Any = None) -> Any:
        if not blips:
            blips.append(files)
            raise TransientError("the disk blinked")
        return erase_files(subjects, files, journal)

    connector.erase_files = blips_once  # type: ignore[method-assign]
    again: list[tuple[int, float | None]] = []
    rt.dispatch.part = lambda part_id, countdown=None: again.append((part_id, countdown))  # type: ignore[method-assign]
    for part_id in held:
        parts.run_part(rt, part_id)
    assert [part_id for part_id, _ in again] == [held[0]] and again[0][1]
    parts.run_part(rt, held[0])
    drain(rt)
    assert (settled(rt, request_ids(rt)), left_rows(root)) == one_process


def test_a_part_failing_for_good_fails_the_pass_and_keeps_the_counts(make_runtime: MakeRuntime,
                                                                     tmp_path: Path) -> None:
    """A part that fails for good fails every request of the pass, once, with its reason; the parts not yet
    run are dropped, and the rows the done parts removed are kept in each task's journal for the retry."""
    rt, root, held = spread_world(make_runtime, tmp_path)
    connector = rt.connector("clickstream")
    assert isinstance(connector, SnapshotConnector)
    erase_files = connector.erase_files

    def the_fifth_fails(subjects: Any, files: Any, journal: Any = None) -> Any:
        if files == ["2026-10-01/part-04.parquet"]:
            raise PermanentError("snapshot clickstream: 2026-10-01/part-04.parquet: permission denied")
        return erase_files(subjects, files, journal)

    connector.erase_files = the_fifth_fails  # type: ignore[method-assign]
    for part_id in held[:6]:
        parts.run_part(rt, part_id)
    for part_id in held[6:]:
        parts.run_part(rt, part_id)  # dropped: never run
    drain(rt)
    with rt.transaction() as session:
        statuses = session.scalars(select(SnapshotPart.status).order_by(SnapshotPart.seq)).all()
        tasks = session.scalars(select(SystemTask).order_by(SystemTask.id)).all()
    assert statuses == [PartStatus.DONE] * 4 + [PartStatus.FAILED] + [PartStatus.DROPPED] * 7
    assert {(t.status, t.error) for t in tasks} == {
        ("failed", "snapshot clickstream: 2026-10-01/part-04.parquet: permission denied")}
    assert left_rows(root)["2026-11-01/part-06.parquet"] == [106, 2, 102, 9, 9]  # a dropped part's file
    assert [t.progress for t in tasks] == [  # users 2, 5, 9: the rows of parts 0-3
        {"2026-10-01/part-00.parquet": 1, "2026-10-01/part-03.parquet": 1},
        {"2026-10-01/part-01.parquet": 1},
        {f"2026-10-01/part-0{i}.parquet": 2 for i in range(4)},
    ]


def test_a_retry_after_a_failed_pass_counts_what_the_failed_pass_removed_once(make_runtime: MakeRuntime,
                                                                             tmp_path: Path, one_process: Any) -> None:
    """A pass fails at its fifth part, which journaled its file and was refused before the swap, after four
    parts removed rows; retried, a new spread pass finds those four files clean and counts their rows from
    the journal (listed as by an earlier attempt), rewrites the fifth and the rest (its journal entry then
    superseded), and each request ends with the counts and files one process's pass gives, none twice."""
    rt, root, held = spread_world(make_runtime, tmp_path)
    connector = rt.connector("clickstream")
    assert isinstance(connector, SnapshotConnector)
    erase_files = connector.erase_files

    def the_fifth_fails(subjects: Any, files: Any, journal: Any = None) -> Any:
        if files != ["2026-10-01/part-04.parquet"]:
            return erase_files(subjects, files, journal)

        def noted(rel: str, rows: list[int]) -> None:  # journaled, then refused before the swap
            journal(rel, rows)
            raise PermanentError(f"snapshot clickstream: {rel}: permission denied")

        return erase_files(subjects, files, noted)

    connector.erase_files = the_fifth_fails  # type: ignore[method-assign]
    for part_id in held:
        parts.run_part(rt, part_id)
    connector.erase_files = erase_files  # type: ignore[method-assign]
    ids = request_ids(rt)
    held.clear()
    for request_id in ids:
        fanout.retry(rt, request_id)
    drain(rt)
    assert len(held) == 12  # the retry's pass, spread again
    for part_id in held:
        parts.run_part(rt, part_id)
    drain(rt)

    expected, files = one_process
    assert left_rows(root) == files
    done = settled(rt, ids)
    assert [(status, items) for status, items, _, _ in done] == [(status, items) for status, items, _, _ in expected]
    for (_, _, evidence, _), earlier in zip(done, ({"2026-10-01/part-00.parquet", "2026-10-01/part-03.parquet"},
                                                  {"2026-10-01/part-01.parquet"},
                                                  {f"2026-10-01/part-0{i}.parquet" for i in range(4)}), strict=True):
        assert {f["file"] for f in evidence["files"] if f.get("by_an_earlier_attempt")} == earlier
        assert sum(f["rows_removed"] for f in evidence["files"]) == evidence["items"]
