"""The vector connector on a LanceDB table in a folder: the subject's rows leave the table and the
disk, their neighbours stay byte for byte, filters never widen."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from lancedb.index import IvfFlat

from connectors.base import SnapshotHit, Subject
from connectors.errors import PermanentError
from connectors.vector.connector import VectorConnector
from tests.helpers import user, vector_connector

FOLDS = {"user_id": (), "email": ("lower",)}
ROWS_A = [{"user_id": 4, "email": "a@x"}, {"user_id": 42, "email": "b@x"}, {"user_id": 420, "email": "c@x"}]
ROWS_B = [{"user_id": 42, "email": "d@x"}, {"user_id": 7, "email": "e@x"}]


def connector(tmp_path: Path, **overrides: Any) -> VectorConnector:
    """A lancedb system over table `docs` of the test's folder, matching user_id."""
    raw = {"name": "emb", "kind": "vector", "backend": "lancedb", "uri": str(tmp_path / "lance"), "table": "docs",
           "where": {"user_id": "user_id"}} | overrides
    return vector_connector(raw, FOLDS)


def by_id(table: Any) -> dict[int, list[list[float]]]:
    """Each user_id's vectors in the table's latest version."""
    table.checkout_latest()
    data = table.to_arrow()
    found: dict[int, list[list[float]]] = {}
    for uid, vec in zip(data["user_id"].to_pylist(), data["vector"].to_pylist(), strict=True):
        found.setdefault(uid, []).append(vec)
    return found


def on_disk(folder: Path, needle: bytes) -> list[str]:
    """The files under the folder whose bytes hold the needle."""
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_erase_takes_the_subjects_rows_from_every_fragment_and_leaves_neighbours(
        tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """42's rows go from both fragments; 4, 420 and 7 keep their vectors exactly."""
    table = lance_table(ROWS_A, ROWS_B)
    before = by_id(table)
    with connector(tmp_path) as c:
        outcome = c.erase(user("42"))
        assert c.verify(user("42")) == 0
        assert c.erase(user("42")).items_erased == 0
    after = by_id(table)
    assert outcome.items_erased == 2
    assert 42 not in after
    assert after == {k: v for k, v in before.items() if k != 42}


def test_the_erased_vectors_leave_the_disk(tmp_path: Path, lance_table: Callable[..., Any],
                                           vector_bytes: Callable[[int], bytes]) -> None:
    """No file of the table holds the subject's vectors afterwards, and only the latest version is left."""
    table = lance_table(ROWS_A, ROWS_B)
    folder = tmp_path / "lance"
    assert on_disk(folder, vector_bytes(1)) and on_disk(folder, vector_bytes(3))
    with connector(tmp_path) as c:
        outcome = c.erase(user("42"))
    assert on_disk(folder, vector_bytes(1)) == [] and on_disk(folder, vector_bytes(3)) == []
    assert on_disk(folder, vector_bytes(0)) and on_disk(folder, vector_bytes(4))  # the neighbours' are kept
    table.checkout_latest()
    assert len(table.list_versions()) == 1
    assert outcome.evidence["versions_kept"] == 1 and outcome.evidence["versions_removed"] >= 2


def test_a_plain_lance_delete_leaves_the_vector_on_disk(tmp_path: Path, lance_table: Callable[..., Any],
                                                        vector_bytes: Callable[[int], bytes]) -> None:
    """Why the connector rewrites fragments: a delete and an optimize alone keep the bytes."""
    table = lance_table([{"user_id": 42}] + [{"user_id": 100 + i} for i in range(29)])
    table.delete("user_id = 42")  # 1 row in 30: below the share of deleted rows that compaction rewrites
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table.optimize(cleanup_older_than=timedelta(0))
    assert on_disk(tmp_path / "lance", vector_bytes(1))


def test_older_versions_no_longer_hold_the_subject(tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """The versions from before the erase are gone: none can be checked out to find the rows."""
    table = lance_table(ROWS_A, ROWS_B)
    old = table.version
    with connector(tmp_path) as c:
        c.erase(user("42"))
    table.checkout_latest()
    assert [v["version"] for v in table.list_versions()] == [table.version]
    with pytest.raises(Exception, match="no longer exists"):
        table.checkout(old)


def test_a_neighbour_value_and_an_injection_match_nothing(tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """4 takes only 4; "42 OR 1=1" and "042" are no integers, so an integer column matches nothing."""
    table = lance_table(ROWS_A, ROWS_B)
    with connector(tmp_path) as c:
        for value in ("42 OR 1=1", "042", "42.0", "-0"):
            assert c.verify(user(value)) == 0
            assert c.erase(user(value)).items_erased == 0
        assert c.erase(user("4")).items_erased == 1
    assert sorted(by_id(table)) == [7, 42, 420]


def test_text_with_a_quote_is_matched_exactly_after_its_fold(tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """o'brien@x takes the stored O'Brien@X (folded lower) and nothing else, however the value is quoted."""
    rows = [{"user_id": 1, "email": "O'Brien@X"}, {"user_id": 2, "email": "o'brien@x.y"},
            {"user_id": 3, "email": "obrien@x"}, {"user_id": 4, "email": "x' OR '1'='1"}, {"user_id": 5, "email": None}]
    table = lance_table(rows)
    with connector(tmp_path, where={"email": "email"}) as c:
        assert c.erase(Subject({"email": ("x' or '1'='1",)})).items_erased == 1  # the stored value, literally
        assert c.erase(Subject({"email": ("o'brien@x",)})).items_erased == 1
        assert c.erase(Subject({"email": ("' or ''='",)})).items_erased == 0
    assert sorted(by_id(table)) == [2, 3, 5]


def test_match_exact_compares_text_as_stored(tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """With match = "exact" the engine filters, and a differently cased stored value is not the subject's."""
    table = lance_table([{"user_id": 1, "email": "Mary@X"}, {"user_id": 2, "email": "mary@x"}])
    with connector(tmp_path, where={"email": "email"}, match="exact") as c:
        assert c.erase(Subject({"email": ("mary@x",)})).items_erased == 1
    assert sorted(by_id(table)) == [1]


def test_where_fields_are_anded(tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """A row is the subject's when every where column holds their value; a subject lacking a type matches nothing."""
    table = lance_table(ROWS_A, ROWS_B)
    with connector(tmp_path, where={"user_id": "user_id", "email": "email"}) as c:
        assert c.verify(user("42")) == 0
        assert c.erase(Subject({"user_id": ("42",), "email": ("d@x",)})).items_erased == 1
    assert sorted(k for k, v in by_id(table).items() for _ in v) == [4, 7, 42, 420]


def test_rows_with_null_in_a_rewritten_fragment_stay(tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """A row whose where column is null is nobody's, and is kept when its fragment is rewritten."""
    table = lance_table([{"user_id": 42}, {"user_id": None}, {"user_id": 5}])
    with connector(tmp_path) as c:
        assert c.erase(user("42")).items_erased == 1
    table.checkout_latest()
    assert sorted(table.to_arrow()["user_id"].to_pylist(), key=str) == [5, None]


def test_the_table_is_reported_as_a_snapshot(tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """locate and erase name SYSTEM:TABLE with the subject's rows, for lineage to flag; evidence keeps no value."""
    lance_table(ROWS_A, ROWS_B)
    with connector(tmp_path) as c:
        assert c.locate(user("42")) == (SnapshotHit("emb:docs", 2),)
        outcome = c.erase(user("42"))
        assert c.locate(user("42")) == () and c.erase(user("42")).snapshots == ()
    assert outcome.snapshots == (SnapshotHit("emb:docs", 2),)
    assert outcome.evidence["rows_removed"] == 2 and outcome.evidence["where"] == {"user_id": "user_id"}
    assert "42" not in str({k: v for k, v in outcome.evidence.items() if k != "where"})


def test_a_retention_keeps_old_versions_and_says_until_when(tmp_path: Path, lance_table: Callable[..., Any]) -> None:
    """With cleanup_older_than = "7 days" older versions still hold the rows; the outcome is an exemption
    that ends after 7 days."""
    table = lance_table(ROWS_A)
    old = table.version
    with connector(tmp_path, cleanup_older_than="7 days") as c:
        outcome = c.erase(user("42"))
        assert c.verify(user("42")) == 0
    table.checkout(old)
    assert 42 in table.to_arrow()["user_id"].to_pylist()
    assert outcome.exempt_reason and "cleanup_older_than" in outcome.exempt_reason
    assert outcome.recheck_at is not None
    assert timedelta(days=7) < outcome.recheck_at - datetime.now(UTC) < timedelta(days=7, minutes=10)


def test_a_tagged_old_version_stops_the_erase_before_it_deletes(tmp_path: Path,
                                                                lance_table: Callable[..., Any]) -> None:
    """A tag keeps a version cleanup cannot remove: the system fails naming the tag, and nothing is deleted."""
    table = lance_table(ROWS_A, ROWS_B)
    table.tags.create("train-2026", 1)
    with connector(tmp_path) as c, pytest.raises(PermanentError, match="train-2026"):
        c.erase(user("42"))
    assert len(by_id(table)[42]) == 2


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"where": {"owner": "user_id"}}, "no column 'owner'"),
    ({"table": "nope"}, "nope"),
    ({"where": {"tags": "user_id"}}, "column 'tags' is list"),
])
def test_a_missing_table_or_column_fails_naming_it(tmp_path: Path, lance_table: Callable[..., Any],
                                                   overrides: dict[str, Any], problem: str) -> None:
    """No table, no where column, or a column of another type: a PermanentError naming it."""
    lance_table([{"user_id": 42, "tags": ["a"]}], schema={"user_id": pa.int64(), "tags": pa.list_(pa.string())})
    with connector(tmp_path, **overrides) as c, pytest.raises(PermanentError, match=problem):
        c.erase(user("42"))


def test_a_vector_index_loses_the_erased_vectors_too(tmp_path: Path, lance_table: Callable[..., Any],
                                                     vector_bytes: Callable[[int], bytes]) -> None:
    """An IVF_FLAT index keeps whole vectors: after the erase no index file holds the subject's."""
    table = lance_table([{"user_id": 42 if i == 3 else 1000 + i} for i in range(300)])
    table.create_index("vector", config=IvfFlat(distance_type="l2", num_partitions=2))
    folder = tmp_path / "lance"
    assert any("_indices" in path for path in on_disk(folder, vector_bytes(3)))
    with connector(tmp_path) as c:
        assert c.erase(user("42")).items_erased == 1
    assert on_disk(folder, vector_bytes(3)) == []
    assert any("_indices" in path for path in on_disk(folder, vector_bytes(4)))  # the index is still there
    table.checkout_latest()
    assert len(table.list_versions()) == 1
    assert table.search(table.to_arrow()["vector"][3].as_py()).limit(1).to_arrow()["user_id"].to_pylist() == [1004]


def test_a_table_in_an_s3_bucket_loses_the_vectors_too(
        s3_endpoint: str, s3_client: Any, bucket: str, lance_table: Callable[..., Any],
        vector_bytes: Callable[[int], bytes]) -> None:
    """On s3:// (moto's server), the erase leaves no object holding the subject's vectors."""
    uri = f"s3://{bucket}/lance"
    options = {"endpoint": s3_endpoint, "allow_http": "true", "region": "us-east-1"}
    table = lance_table([{"user_id": 4}, {"user_id": 42}, {"user_id": 420}], uri=uri, options=options)
    with connector(Path("/unused"), uri=uri, endpoint_url=s3_endpoint, region="us-east-1") as c:
        assert c.erase(user("42")).items_erased == 1
        assert c.verify(user("42")) == 0
    bodies = [s3_client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
              for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert not any(vector_bytes(1) in body for body in bodies)
    assert any(vector_bytes(2) in body for body in bodies)
    table.checkout_latest()
    assert sorted(table.to_arrow()["user_id"].to_pylist()) == [4, 420]
