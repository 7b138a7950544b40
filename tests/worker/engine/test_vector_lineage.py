"""A vector table is training data: lineage names it as `SYSTEM:TABLE`, and a model version built
from a LanceDB table that held an erased subject's embeddings is flagged when the request settles;
one built after the erasure is not; another table name, or a system of another kind, is refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import lancedb
import pyarrow as pa
import pytest

from tests.helpers import MakeRuntime, drain, system_table
from worker.engine import intake, lineage
from worker.errors import InputError
from worker.runtime import Runtime
from worker.store.models import utcnow
from worker.surfaces import views


@pytest.fixture
def vectors(make_runtime: MakeRuntime, tmp_path: Path) -> Runtime:
    """A LanceDB table `messages` of users 1, 2, 2 and 20, each with a 4-float embedding."""
    flat = pa.array([float(i) for i in range(16)], pa.float32())
    table = pa.table({"user_id": pa.array([1, 2, 2, 20], pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, 4)})
    lancedb.connect(tmp_path / "lance").create_table("messages", table)
    return make_runtime(system_table("embeddings", "vector", backend="lancedb", uri=str(tmp_path / "lance"),
                                     table="messages", where={"user_id": "user_id"}))


def flagged(rt: Runtime) -> list[tuple[str, str, list[str]]]:
    return [(m["model"], m["version"], f["snapshots"]) for m in views.models(rt, flagged_only=True)
            for f in m["flags"]]


def test_a_model_built_from_the_table_is_flagged(vectors: Runtime) -> None:
    """rag 3 built from embeddings:messages yesterday; user 2 erased today: flagged, naming the table."""
    lineage.add(vectors, "rag", "3", ["embeddings:messages"], trained_at=utcnow() - timedelta(days=1))
    intake.submit(vectors, {"user_id": "2"})
    drain(vectors)
    assert flagged(vectors) == [("rag", "3", ["embeddings:messages"])]


def test_a_model_built_after_the_erasure_is_not_flagged(vectors: Runtime) -> None:
    """The table no longer held user 2 when rag 4 was built from it."""
    intake.submit(vectors, {"user_id": "2"})
    drain(vectors)
    lineage.add(vectors, "rag", "4", ["embeddings:messages"], trained_at=utcnow() + timedelta(seconds=30))
    assert flagged(vectors) == []


@pytest.mark.parametrize("snapshot", ["embeddings:other", "embeddings:2026-11-01"])
def test_another_table_of_a_vector_system_is_refused(vectors: Runtime, snapshot: str) -> None:
    """A vector system's snapshot is its table, by name."""
    with pytest.raises(InputError, match="a vector system's snapshot is its table: embeddings:messages"):
        lineage.add(vectors, "rag", "5", [snapshot])
