"""The snapshot connector on an S3 prefix (moto's server over a socket), for each file format:
two subjects erased in one pass over two snapshots, only the objects holding them rewritten,
their older versions purged in a versioned bucket, each subject's outcome kept apart.
(A Delta table cannot live on s3://: its config is refused, see test_snapshot_delta.py.)"""

from __future__ import annotations

import csv
import gzip
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.base import SnapshotHit, Subject
from connectors.snapshot.connector import SnapshotConnector
from tests.helpers import object_body, object_versions, put_object, snapshot_connector

FORMATS = ["parquet", "jsonl", "jsonl.gz", "csv", "csv.gz"]
OCT, NOV = "clickstream:2026-10-01", "clickstream:2026-11-01"
Rows = list[tuple[int, str]]
LAYOUT: dict[str, Rows] = {  # file (without its ending) -> (user_id, event) rows
    "2026-10-01/part-0": [(42, "a"), (1, "b"), (7, "c"), (420, "d"), (42, "e"), (3, "f")],  # both subjects
    "2026-10-01/part-1": [(1, "g"), (420, "h"), (4200, "i")],                              # neither
    "2026-11-01/part-0": [(42, "j"), (5, "k"), (420, "l")],                                 # 42 only
    "2026-11-01/part-1": [(420, "m"), (2, "n")],                                            # neither
}
SUBJECTS = [Subject({"user_id": ("42",)}), Subject({"user_id": ("7",)})]
GONE = {42, 7}


def connector(bucket: str, endpoint: str, fmt: str) -> SnapshotConnector:
    """A clickstream system in one format under the bucket's `data/` prefix."""
    return snapshot_connector({"name": "clickstream", "kind": "snapshot", "location": f"s3://{bucket}/data/",
                               "format": fmt, "where": {"user_id": "user_id"}, "endpoint_url": endpoint,
                               "region": "us-east-1"}, frozenset({"user_id"}))


def rel(name: str, fmt: str) -> str:
    """A file's path under the location, with its format's ending."""
    return f"{name}.{fmt}"


def encode(fmt: str, rows: Rows) -> bytes:
    """The bytes of a file of rows in a format, gzipped for the .gz ones."""
    family = fmt.removesuffix(".gz")
    if family == "parquet":
        sink = io.BytesIO()
        table = pa.table({"user_id": pa.array([u for u, _ in rows], pa.int64()), "event": [e for _, e in rows]})
        pq.write_table(table, sink, row_group_size=2)
        return sink.getvalue()
    if family == "jsonl":
        data = b"".join(json.dumps({"user_id": u, "event": e}).encode() + b"\n" for u, e in rows)
    else:
        data = ("user_id,event\r\n" + "".join(f"{u},{e}\r\n" for u, e in rows)).encode()
    return gzip.compress(data, mtime=0) if fmt.endswith(".gz") else data


def plain(fmt: str, data: bytes) -> bytes:
    """A text file's bytes, decompressed if its format is gzipped."""
    return gzip.decompress(data) if fmt.endswith(".gz") else data


def decode(fmt: str, data: bytes) -> Rows:
    """The (user_id, event) rows of a file's bytes."""
    family = fmt.removesuffix(".gz")
    if family == "parquet":
        return [(r["user_id"], r["event"]) for r in pq.read_table(io.BytesIO(data)).to_pylist()]
    text = plain(fmt, data).decode()
    if family == "jsonl":
        return [(r["user_id"], r["event"]) for r in map(json.loads, text.splitlines())]
    return [(int(u), e) for u, e in list(csv.reader(io.StringIO(text)))[1:]]


def upload(s3: Any, bucket: str, fmt: str, older: dict[str, list[Rows]] | None = None) -> None:
    """The layout under `data/`, each file after its older versions, if any."""
    for name, rows in LAYOUT.items():
        for old in (older or {}).get(name, []):
            put_object(s3, bucket, f"data/{rel(name, fmt)}", encode(fmt, old))
        put_object(s3, bucket, f"data/{rel(name, fmt)}", encode(fmt, rows))


def heads(s3: Any, bucket: str, fmt: str, names: list[str]) -> dict[str, tuple[str, Any, str | None]]:
    """Each named object's ETag, LastModified and version id."""
    found = {}
    for name in names:
        head = s3.head_object(Bucket=bucket, Key=f"data/{rel(name, fmt)}")
        found[name] = (head["ETag"], head["LastModified"], head.get("VersionId"))
    return found


def keys(s3: Any, bucket: str) -> list[str]:
    """Every key in the bucket."""
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def uploads(conn: SnapshotConnector) -> list[str]:
    """The keys the connector will upload (single or multipart), recorded as they go."""
    sent: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(params["Key"])

    for op in ("PutObject", "CreateMultipartUpload"):
        conn.location.client.meta.events.register(f"before-parameter-build.s3.{op}", record)  # type: ignore[attr-defined]
    return sent


def expected_outcomes(fmt: str, purged: dict[tuple[int, str], int] | None = None) -> list[tuple[Any, ...]]:
    """Each subject's (items, evidence, hits): 42 has 2 rows in Oct and 1 in Nov, 7 has 1 in Oct;
    `purged` adds older versions removed, by (subject, file)."""
    purged = purged or {}

    def entry(subject: int, snapshot: str, name: str, rows: int) -> dict[str, Any]:
        older = purged.get((subject, name), 0)
        base = {"snapshot": snapshot, "file": rel(name, fmt), "rows_removed": rows}
        return base | ({"older_versions_removed": older} if older else {})

    oct0, oct1, nov0 = (rel(n, fmt) for n in ("2026-10-01/part-0", "2026-10-01/part-1", "2026-11-01/part-0"))
    seven = [entry(7, OCT, "2026-10-01/part-0", 1)]
    if (7, "2026-10-01/part-1") in purged:
        seven.append(entry(7, OCT, "2026-10-01/part-1", 0))
    return [
        (3, {"files": [entry(42, OCT, "2026-10-01/part-0", 2), entry(42, NOV, "2026-11-01/part-0", 1)]},
         (SnapshotHit(OCT, 2, (oct0,)), SnapshotHit(NOV, 1, (nov0,)))),
        (1, {"files": seven}, (SnapshotHit(OCT, 1, (oct0,)),)),
    ]


def outcomes_of(conn: SnapshotConnector) -> list[tuple[Any, ...]]:
    """Erase both subjects in one pass; each one's (items, evidence, hits)."""
    return [(o.items_erased, o.evidence, o.snapshots) for o in conn.erase_many(SUBJECTS)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_s3_erase_rewrites_only_objects_holding_a_subject(
    s3_client: Any, bucket: str, s3_endpoint: str, fmt: str,
) -> None:
    """Two subjects go from the objects holding them, every other row kept in order; the other
    objects are never uploaded and keep their ETag; neighbours such as 420 stay; counts are apart."""
    upload(s3_client, bucket, fmt)
    untouched = ["2026-10-01/part-1", "2026-11-01/part-1"]
    before, listed = heads(s3_client, bucket, fmt, untouched), keys(s3_client, bucket)
    conn = connector(bucket, s3_endpoint, fmt)
    sent = uploads(conn)

    assert outcomes_of(conn) == expected_outcomes(fmt)

    assert sorted(k for k in sent if not k.endswith(".erasure.lock")) == [
        f"data/{rel(n, fmt)}" for n in ("2026-10-01/part-0", "2026-11-01/part-0")]
    assert heads(s3_client, bucket, fmt, untouched) == before
    assert keys(s3_client, bucket) == listed  # same keys: nothing beside them, no lock left
    for name, rows in LAYOUT.items():
        data = object_body(s3_client, bucket, f"data/{rel(name, fmt)}")
        kept = [row for row in rows if row[0] not in GONE]
        assert decode(fmt, data) == kept
        if fmt != "parquet":  # text records are copied byte for byte
            assert plain(fmt, data) == plain(fmt, encode(fmt, kept))
    assert conn.verify_many(SUBJECTS) == [0, 0]
    assert conn.verify(Subject({"user_id": ("420",)})) == 4


@pytest.mark.parametrize("fmt", FORMATS)
def test_s3_erase_purges_older_versions_holding_a_subject(
    s3_client: Any, versioned: str, s3_endpoint: str, fmt: str,
) -> None:
    """In a versioned bucket, every older version holding either subject goes, the version each rewrite
    made older included; versions holding neither stay, and untouched objects keep their current version."""
    upload(s3_client, versioned, fmt, older={
        "2026-10-01/part-0": [[(42, "old")], [(9, "older"), (420, "x")]],  # 42's, then nobody's
        "2026-10-01/part-1": [[(7, "old")]],                                 # 7's, under a file now clean
        "2026-11-01/part-1": [[(420, "old")]],                               # nobody's
    })
    key = {name: f"data/{rel(name, fmt)}" for name in LAYOUT}
    before = {name: object_versions(s3_client, versioned, k) for name, k in key.items()}  # newest first
    current = heads(s3_client, versioned, fmt, ["2026-10-01/part-1", "2026-11-01/part-1"])
    conn = connector(versioned, s3_endpoint, fmt)

    assert outcomes_of(conn) == expected_outcomes(fmt, purged={
        (42, "2026-10-01/part-0"): 2, (7, "2026-10-01/part-0"): 1, (42, "2026-11-01/part-0"): 1,
        (7, "2026-10-01/part-1"): 1})

    after = {name: object_versions(s3_client, versioned, k) for name, k in key.items()}
    assert after["2026-10-01/part-0"][1:] == [before["2026-10-01/part-0"][1]]  # the new one, and nobody's
    assert after["2026-10-01/part-0"][0] not in before["2026-10-01/part-0"]
    assert len(after["2026-11-01/part-0"]) == 1 and after["2026-11-01/part-0"][0] not in before["2026-11-01/part-0"]
    assert after["2026-10-01/part-1"] == before["2026-10-01/part-1"][:1]
    assert after["2026-11-01/part-1"] == before["2026-11-01/part-1"]
    assert heads(s3_client, versioned, fmt, ["2026-10-01/part-1", "2026-11-01/part-1"]) == current
    for name, ids in after.items():  # no version left to bring a subject back
        for version_id in ids:
            data = s3_client.get_object(Bucket=versioned, Key=key[name], VersionId=version_id)["Body"].read()
            assert not {u for u, _ in decode(fmt, data)} & GONE
    assert s3_client.list_object_versions(Bucket=versioned).get("DeleteMarkers", []) == []
    assert conn.verify_many(SUBJECTS) == [0, 0]
    assert conn.verify(Subject({"user_id": ("420",)})) == 4
