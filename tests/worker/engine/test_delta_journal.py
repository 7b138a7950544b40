"""The journal for Delta tables: before the commit that deletes the subjects' rows, each current file
holding them is noted in the store with its rows per request, so an attempt that dies after the commit
and before the store records its outcome loses no count; one that dies before it counts them once."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

deltalake = pytest.importorskip("deltalake")
from deltalake import DeltaTable, write_deltalake  # noqa: E402

from tests.helpers import MakeRuntime, after_a_death, system_table  # noqa: E402


@pytest.mark.parametrize("dies", ["after the change", "before the change"])
def test_rows_deleted_or_journaled_by_an_attempt_that_died_are_counted_once(make_runtime: MakeRuntime,
                                                                            tmp_path: Path, dies: str) -> None:
    """User 42's three rows in two files: killed after the commit, the second attempt finds none and counts
    three from the journal, each file listed as by an earlier attempt; killed after journaling and before
    the commit, the second deletes and counts three, not six."""
    path = tmp_path / "events"
    write_deltalake(path, pa.table({"user_id": pa.array([42, 420, 42], pa.int64())}))
    write_deltalake(path, pa.table({"user_id": pa.array([42, 7], pa.int64())}), mode="append")
    rt = make_runtime(system_table("events", "snapshot", location=str(path), format="delta",
                                   where={"user_id": "user_id"}, retention_hours=0))
    system, evidence = after_a_death(rt, "events", {"user_id": "42"}, dies)

    assert sorted(DeltaTable(path).to_pyarrow_table().column("user_id").to_pylist()) == [7, 420]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, 3)
    files = evidence["files"]
    earlier = sorted(f["rows_removed"] for f in files if f.get("by_an_earlier_attempt"))
    assert earlier == ([1, 2] if dies == "after the change" else [])
    assert sum(f["rows_removed"] for f in files) == 3
