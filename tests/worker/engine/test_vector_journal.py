"""The journal for vector systems: before the delete, each subject's rows (counted just before) are noted in
the store, so an attempt that dies after deleting and before the store records its outcome loses no count;
one that dies before the delete counts them once. On LanceDB with `cleanup_older_than`, rows an earlier
attempt deleted still sit in older versions: the outcome says so, as an exemption, even when this attempt
found nothing to delete."""

from __future__ import annotations

from pathlib import Path

import lancedb
import pyarrow as pa
import pytest

from tests.helpers import MakeRuntime, after_a_death, system_table
from worker.runtime import Runtime


def embeddings(make_runtime: MakeRuntime, tmp_path: Path, **keys: object) -> Runtime:
    """A LanceDB table `messages` of users 2, 2, 20 and 7, each with a 4-float embedding."""
    flat = pa.array([float(i) for i in range(16)], pa.float32())
    table = pa.table({"user_id": pa.array([2, 2, 20, 7], pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, 4)})
    lancedb.connect(tmp_path / "lance").create_table("messages", table)
    return make_runtime(system_table("embeddings", "vector", backend="lancedb", uri=str(tmp_path / "lance"),
                                     table="messages", where={"user_id": "user_id"}, **keys))


def users_left(tmp_path: Path) -> list[int]:
    return sorted(lancedb.connect(tmp_path / "lance").open_table("messages").to_arrow().column("user_id").to_pylist())


@pytest.mark.parametrize("dies", ["after the change", "before the change"])
def test_rows_deleted_or_journaled_by_an_attempt_that_died_are_counted_once(make_runtime: MakeRuntime,
                                                                            tmp_path: Path, dies: str) -> None:
    """Killed after its delete, the first attempt's two rows are counted by the second from the journal; killed
    after journaling and before the delete, the second deletes them and counts two, not four."""
    system, evidence = after_a_death(embeddings(make_runtime, tmp_path), "embeddings", {"user_id": "2"}, dies)

    assert users_left(tmp_path) == [7, 20]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, 2)
    assert evidence.get("by_an_earlier_attempt") == ({"rows": 2} if dies == "after the change" else None)


def test_rows_an_earlier_attempt_deleted_and_old_versions_keep_are_an_exemption(make_runtime: MakeRuntime,
                                                                               tmp_path: Path) -> None:
    """With cleanup_older_than, the second attempt finds nothing, yet the rows the first deleted are still in
    older versions: exempt until cleanup may drop them, never erased outright."""
    rt = embeddings(make_runtime, tmp_path, cleanup_older_than="7 days")
    system, _ = after_a_death(rt, "embeddings", {"user_id": "2"}, "after the change")

    assert (system["status"], system["items_erased"]) == ("exempt", 2)
    assert "older versions of LanceDB table 'messages' keep the 2 rows removed" in system["reason"]
