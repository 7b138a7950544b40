"""The guard reads a vector system's table too: `guard check embeddings:messages` counts the rows of
guarded subjects that came back into a LanceDB table after their request, `--fix` erases them (and
only them) and flags the models built from it, and lineage recorded on the table is screened."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import lancedb
import pyarrow as pa
import pytest

from tests.helpers import MakeRuntime, drain, system_table
from worker.engine import guard_check, intake, lineage
from worker.runtime import Runtime
from worker.store.models import utcnow
from worker.surfaces import views

SNAPSHOT = "embeddings:messages"


def rows(users: list[int], emails: list[str], first: int = 0) -> pa.Table:
    flat = pa.array([float(first + i) for i in range(4 * len(users))], pa.float32())
    return pa.table({"user_id": pa.array(users, pa.int64()), "email": emails,
                     "vector": pa.FixedSizeListArray.from_arrays(flat, 4)})


@pytest.fixture
def world(make_runtime: MakeRuntime, tmp_path: Path) -> tuple[Runtime, object, str]:
    """User 2 erased from `messages` (matched on user_id); then a re-index brings 2 back twice, beside
    20 and 12."""
    db = lancedb.connect(tmp_path / "lance")
    table = db.create_table("messages", rows([1, 2, 20], ["a@x", "b@x", "c@x"]))
    rt = make_runtime(system_table("embeddings", "vector", backend="lancedb", uri=str(tmp_path / "lance"),
                                   table="messages", where={"user_id": "user_id"}))
    request_id = intake.submit(rt, {"user_id": "2"}).request_id
    drain(rt)
    table.add(rows([2, 12, 2], ["d@x", "e@x", "f@x"], first=100))
    return rt, table, request_id


def users(table: object) -> list[int]:
    """The user ids of the table's latest version (opened again: cleanup removed the files the handle read)."""
    fresh = lancedb.connect(table.uri.rsplit("/", 1)[0]).open_table("messages")  # type: ignore[attr-defined]
    return sorted(fresh.to_arrow().column("user_id").to_pylist())


def test_a_guarded_subject_back_in_the_table_is_found_and_fixed(world: tuple[Runtime, object, str]) -> None:
    """Found: 2 rows; fixed: 2 removed, 1, 20 and 12 stay; a model built from the table after the erasure (so
    not flagged by it) is flagged
    for 2's request with the guard's reason."""
    rt, table, request_id = world
    lineage.add(rt, "rag", "1", [SNAPSHOT], trained_at=utcnow() + timedelta(seconds=30))  # after the erasure
    found = guard_check.check(rt, SNAPSHOT)
    assert not found.clean and found.found.rows == 2 and found.found.requests == {request_id}
    fixed = guard_check.check(rt, SNAPSHOT, fix=True)
    assert fixed.clean and fixed.fixed is not None and fixed.fixed["rows_removed"] == 2
    assert users(table) == [1, 12, 20]
    flags = [(m["model"], f["request_id"], f["reason"]) for m in views.models(rt, flagged_only=True)
             for f in m["flags"]]
    assert ("rag", request_id, lineage.TRAINED_AFTER) in flags


def test_lineage_on_the_table_is_screened(world: tuple[Runtime, object, str]) -> None:
    """`require_clean` refuses a model built from the table while 2 is back in it."""
    rt, _, _ = world
    with pytest.raises(lineage.NotClean, match=f"{SNAPSHOT} holds 2 row"):
        lineage.add(rt, "rag", "2", [SNAPSHOT], screen=guard_check.screen(rt), require_clean=True)


def test_another_table_name_is_refused(world: tuple[Runtime, object, str]) -> None:
    """A vector system's snapshot is its configured table."""
    rt, _, _ = world
    with pytest.raises(Exception, match="a vector system's snapshot is its table: embeddings:messages"):
        guard_check.check(rt, "embeddings:other")
