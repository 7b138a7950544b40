"""The rewrite journal: a snapshot file's removed rows are noted in the store before it is swapped
in, so an attempt that dies after a swap (killed, or stopped by the next file) loses no count:
the next attempt finds that file already without the subject and counts it from the journal."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import select, update

from connectors.base import Journal
from connectors.snapshot.connector import SnapshotConnector
from tests.helpers import NO_BATCH_WAIT, MakeRuntime, drain, snapshot_system, write_snapshot
from worker.engine import intake, reconcile
from worker.errors import TransientError
from worker.runtime import Runtime
from worker.store.models import SystemTask, utcnow
from worker.surfaces import views

FIRST, SECOND = "2026-10-01/part-0.parquet", "2026-11-01/part-0.parquet"


def stopped_after_the_first_swap(rt: Runtime) -> list[str]:
    """Make the system's first pass stop where the second file would be swapped in, after the
    first one was: what a kill just after a swap leaves. Returns the files journaled, in order."""
    connector = rt.connector("clickstream")
    assert isinstance(connector, SnapshotConnector)
    erase_many, journaled, passes = connector.erase_many, [], []

    def first_pass_stops(subjects: Any, journal: Journal | None = None) -> Any:
        passes.append(1)
        assert journal is not None

        def noted(rel: str, rows: list[int]) -> None:
            if len(passes) == 1 and journaled:
                raise TransientError("stopped before the second swap")
            journaled.append(rel)
            journal(rel, rows)

        return erase_many(subjects, noted)

    connector.erase_many = first_pass_stops  # type: ignore[method-assign]
    return journaled


def test_rows_swapped_out_by_a_stopped_attempt_are_counted_by_the_next(make_runtime: MakeRuntime,
                                                                       tmp_path: Path) -> None:
    """User 2 has 2 rows in the first file, 1 in the second; the first attempt swaps the first file
    and stops. The second attempt rewrites only the second file, yet the system counts 3 rows,
    with both files in its evidence."""
    root = tmp_path / "clickstream"
    write_snapshot(root / FIRST, [1, 2, 2, 3])
    write_snapshot(root / SECOND, [2, 4])
    rt = make_runtime(snapshot_system(root), worker=NO_BATCH_WAIT)
    journaled = stopped_after_the_first_swap(rt)
    request_id = intake.submit(rt, {"user_id": "2"}).request_id
    drain(rt)

    assert journaled == [FIRST, SECOND]  # the second attempt found the first file done
    assert [pq.read_table(root / f).column("user_id").to_pylist() for f in (FIRST, SECOND)] == [[1, 3], [4]]
    system = views.status(rt, request_id)["systems"][0]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, 3)
    files = {f["file"]: (f["rows_removed"], f.get("by_an_earlier_attempt", False))
             for f in views.evidence(rt, request_id)["clickstream"]["files"]}
    assert files == {FIRST: (2, True), SECOND: (1, False)}
    with rt.transaction() as session:
        assert session.scalar(select(SystemTask.progress)) is None  # cleared with the outcome


def test_a_file_journaled_but_never_swapped_is_counted_once(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """Stopped after the journal but before the swap: the old file stays, the next attempt removes
    the rows itself and counts them once, not twice."""
    root = tmp_path / "clickstream"
    write_snapshot(root / FIRST, [1, 2, 2, 3])
    rt = make_runtime(snapshot_system(root), worker=NO_BATCH_WAIT)
    connector = rt.connector("clickstream")
    assert isinstance(connector, SnapshotConnector)
    erase_many, passes = connector.erase_many, []

    def first_pass_stops_after_its_journal(subjects: Any, journal: Journal | None = None) -> Any:
        passes.append(1)
        assert journal is not None

        def noted(rel: str, rows: list[int]) -> None:
            journal(rel, rows)
            if len(passes) == 1:
                raise TransientError("stopped between the journal and the swap")

        return erase_many(subjects, noted)

    connector.erase_many = first_pass_stops_after_its_journal  # type: ignore[method-assign]
    request_id = intake.submit(rt, {"user_id": "2"}).request_id
    drain(rt)
    system = views.status(rt, request_id)["systems"][0]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, 2)
    assert pq.read_table(root / FIRST).column("user_id").to_pylist() == [1, 3]


def test_a_claim_that_lapsed_mid_pass_stops_the_swap(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """The pass ran past its lease and the reconciler gave the claim back (a slow rewrite on a busy
    machine): the journal refuses, the old file stays, and the next attempt erases and counts the rows
    once (not 0, as it would after a swap whose outcome could not be recorded)."""
    root = tmp_path / "clickstream"
    write_snapshot(root / FIRST, [1, 2, 2, 3])
    rt = make_runtime(snapshot_system(root), worker=NO_BATCH_WAIT)
    connector = rt.connector("clickstream")
    assert isinstance(connector, SnapshotConnector)
    erase_many, refused = connector.erase_many, []

    def lapsed_before_the_swap(subjects: Any, journal: Journal | None = None) -> Any:
        assert journal is not None

        def noted(rel: str, rows: list[int]) -> None:
            if not refused:
                with rt.transaction() as session:  # the lease ran out; the reconciler takes the claim back
                    session.execute(update(SystemTask).values(lease_until=utcnow() - timedelta(seconds=1)))
                reconcile.expire_leases(rt)
                try:
                    journal(rel, rows)
                except TransientError as exc:
                    refused.append(str(exc))
                    raise
            journal(rel, rows)

        return erase_many(subjects, noted)

    connector.erase_many = lapsed_before_the_swap  # type: ignore[method-assign]
    request_id = intake.submit(rt, {"user_id": "2"}).request_id
    drain(rt)
    assert refused and "lapsed before" in refused[0]
    system = views.status(rt, request_id)["systems"][0]
    assert (system["status"], system["items_erased"]) == ("erased", 2)
    assert pq.read_table(root / FIRST).column("user_id").to_pylist() == [1, 3]
