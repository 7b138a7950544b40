"""`erasure check`'s engine on every other kind, against its real part: moto's S3 server, Parquet,
JSON lines, CSV and Delta folders (and an s3:// location), the real Redis, LanceDB and Qdrant local,
a real HTTP server. A good system passes with what it could not check in notes; a bucket that does
not exist, a file lacking a where column, Redis down each fail, named; a system that hangs is cut at
the time limit; and nothing is written: the bucket's listing and the files are as they were."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import (
    HTTP_SECRET_ENV,
    FakeService,
    free_port,
    put_object,
    service_raw,
    start_service,
    system_table,
    write_config,
    write_snapshot,
)
from worker.config import load
from worker.engine import check


def one(tmp_path: Path, kind: str, limit: float = check.TIMEOUT, **keys: Any) -> check.Result:
    """The check of a config with one system `it` of the kind, each system given `limit` seconds."""
    return check.run(load(write_config(tmp_path, system_table("it", kind, **keys))), limit).systems[0]


def clicks(location: Path, fmt: str = "parquet", **keys: Any) -> dict[str, Any]:
    """A clickstream snapshot system's keys over a location."""
    return {"location": str(location), "format": fmt, "where": {"user_id": "user_id"}, **keys}


def state(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under the folder with its bytes and mtime."""
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_bucket_that_answers_passes_with_a_note_on_deletes(tmp_path: Path, s3_endpoint: str, s3_client: Any,
                                                             bucket: str) -> None:
    """HeadBucket and a one-key listing under each template pass; S3's lack of a dry-run delete is a note;
    the bucket's listing is the same afterwards."""
    put_object(s3_client, bucket, "avatars/7/a.png")
    before = s3_client.list_object_versions(Bucket=bucket)["Versions"]
    result = one(tmp_path, "s3", bucket=bucket, endpoint_url=s3_endpoint, region="us-east-1",
                 prefixes=["avatars/{user_id}/"], keys=["exports/{user_id}.zip"])
    assert result.ok and result.found.notes[0].startswith("S3 has no dry run of a delete")
    assert s3_client.list_object_versions(Bucket=bucket)["Versions"] == before


def test_a_bucket_that_does_not_exist_fails(tmp_path: Path, s3_endpoint: str) -> None:
    """A bucket the store does not have fails, named, with its HTTP status."""
    result = one(tmp_path, "s3", bucket="no-such-bucket-here", endpoint_url=s3_endpoint, region="us-east-1",
                 prefixes=["avatars/{user_id}/"])
    assert result.found.problems == ("bucket 'no-such-bucket-here' does not exist (HTTP 404)",)


def test_parquet_files_with_their_where_column_pass(tmp_path: Path) -> None:
    """Every Parquet file's footer has the where column: passes, files untouched, counted in a note."""
    write_snapshot(tmp_path / "clicks" / "2026-10-01" / "part-0.parquet", [1, 2])
    write_snapshot(tmp_path / "clicks" / "2026-11-01" / "part-0.parquet", [3])
    before = state(tmp_path / "clicks")
    result = one(tmp_path, "snapshot", **clicks(tmp_path / "clicks"))
    assert result.ok and result.found.notes == ("2 data file(s) looked at",)
    assert state(tmp_path / "clicks") == before


def test_a_snapshot_file_lacking_the_where_column_fails_or_is_a_note_when_skipped(tmp_path: Path) -> None:
    """A Parquet file without `user_id` fails naming the file; with on_missing_column = "skip" it is a note."""
    write_snapshot(tmp_path / "clicks" / "2026-10-01" / "part-0.parquet", [1, 2])
    (tmp_path / "clicks" / "2026-11-01").mkdir()
    pq.write_table(pa.table({"uid": [3]}), tmp_path / "clicks" / "2026-11-01" / "part-0.parquet")
    failing = one(tmp_path, "snapshot", **clicks(tmp_path / "clicks"))
    assert failing.found.problems == ("1 file(s) (2026-11-01/part-0.parquet) of 2 have no column 'user_id' (where)",)
    skipping = one(tmp_path, "snapshot", **clicks(tmp_path / "clicks", on_missing_column="skip"))
    assert skipping.ok and skipping.found.notes[0] == (
        '1 file(s) (2026-11-01/part-0.parquet) of 2 have no column \'user_id\' (where): left untouched '
        '(on_missing_column = "skip")')


def test_json_lines_are_read_no_further_than_the_first_records(tmp_path: Path) -> None:
    """A short JSON lines file none of whose records has the key fails; a long one whose first 100 records
    lack it is a note (a later record may have it), and a gzipped one is read through gzip."""
    folder = tmp_path / "events" / "2026-10-01"
    folder.mkdir(parents=True)
    (folder / "short.jsonl").write_text('{"uid": 1}\n{"uid": 2}\n')
    (folder / "long.jsonl.gz").write_bytes(gzip.compress(
        b"".join(json.dumps({"uid": i} if i < 150 else {"user_id": i}).encode() + b"\n" for i in range(200))))
    (folder / "good.jsonl").write_text('{"user_id": 1}\n\n{"user_id": 2}')
    result = one(tmp_path, "snapshot", **clicks(tmp_path / "events", "jsonl"))
    assert result.found.problems == ("1 file(s) (2026-10-01/short.jsonl) of 3 have no column 'user_id' (where)",)
    assert result.found.notes[0] == ("1 file(s) (2026-10-01/long.jsonl.gz): none of the first 100 records has "
                                     "'user_id'; an erasure fails if no record of it has the column")


def test_a_csv_header_lacking_the_column_and_a_bad_json_line_fail(tmp_path: Path) -> None:
    """A CSV file whose header lacks the where column fails; so does a JSON lines file with a broken line."""
    folder = tmp_path / "csv" / "2026-10-01"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("user_id;event\n1;click\n")
    (folder / "b.csv").write_text("uid,event\n1,click\n")
    assert one(tmp_path, "snapshot", **clicks(tmp_path / "csv", "csv")).found.problems == (
        "1 file(s) (2026-10-01/b.csv) of 2 have no column 'user_id' (where)",)
    broken = tmp_path / "bad" / "2026-10-01"
    broken.mkdir(parents=True)
    (broken / "a.jsonl").write_text('{"user_id": 1}\n{"user_id": \n')
    assert one(tmp_path, "snapshot", **clicks(tmp_path / "bad", "jsonl")).found.problems == (
        "2026-10-01/a.jsonl: line 2 is not valid JSON",)


def test_a_snapshot_location_that_is_not_there_fails(tmp_path: Path) -> None:
    """A location folder that does not exist fails, named."""
    result = one(tmp_path, "snapshot", **clicks(tmp_path / "nowhere"))
    assert result.found.problems == (f"location {str(tmp_path / 'nowhere')!r} is not there",)


def test_an_s3_location_is_read_by_footers_and_heads(tmp_path: Path, s3_endpoint: str, s3_client: Any,
                                                     bucket: str) -> None:
    """Parquet footers fetched by range from an s3:// location: a good file passes, one lacking the column
    fails; the bucket's listing is unchanged."""
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    write_snapshot(good, list(range(5000)))
    pq.write_table(pa.table({"uid": [1]}), bad)
    put_object(s3_client, bucket, "data/2026-10-01/good.parquet", good.read_bytes())
    before = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    keys = {"location": f"s3://{bucket}/data/", "format": "parquet", "where": {"user_id": "user_id"},
            "endpoint_url": s3_endpoint, "region": "us-east-1"}
    assert one(tmp_path, "snapshot", **keys).ok
    put_object(s3_client, bucket, "data/2026-11-01/bad.parquet", bad.read_bytes())
    assert one(tmp_path, "snapshot", **keys).found.problems == (
        "1 file(s) (2026-11-01/bad.parquet) of 2 have no column 'user_id' (where)",)
    assert [e["Key"] for e in s3_client.list_objects_v2(Bucket=bucket)["Contents"]] == [
        *(e["Key"] for e in before), "data/2026-11-01/bad.parquet"]


def test_a_delta_table_is_checked_as_its_engine_checks_it(tmp_path: Path) -> None:
    """A Delta table with the where column passes; one without it fails."""
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "good"), pa.table({"user_id": pa.array([1, 2], pa.int64())}))
    write_deltalake(str(tmp_path / "bad"), pa.table({"uid": pa.array([1], pa.int64())}))
    assert one(tmp_path, "snapshot", **clicks(tmp_path / "good", "delta")).ok
    assert one(tmp_path, "snapshot", **clicks(tmp_path / "bad", "delta")).found.problems == (
        "snapshot it: the Delta table has no column 'user_id'",)


def test_redis_that_answers_passes_and_a_shared_key_of_the_wrong_type_fails(tmp_path: Path, redis_url: str) -> None:
    """PING and DBSIZE pass with a note; a `sets` key that holds a string fails (SREM would say WRONGTYPE),
    and nothing in the database changed."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set("online", "x")
    before = sorted(client.keys())
    assert one(tmp_path, "redis", url=redis_url, keys=["s:{user_id}"]).ok
    result = one(tmp_path, "redis", url=redis_url, sets=[{"key": "online", "member": "{user_id}"}])
    assert result.found.problems == (
        "sets[0]: the key 'online' holds a string, not a set: SREM of a member fails there (WRONGTYPE)",)
    assert sorted(client.keys()) == before and client.get("online") == b"x"
    client.close()


def test_redis_down_fails(tmp_path: Path) -> None:
    """A Redis URL on a closed port fails: unreachable."""
    result = one(tmp_path, "redis", url=f"redis://127.0.0.1:{free_port()}/0", keys=["s:{user_id}"], limit=5)
    assert len(result.found.problems) == 1 and "unreachable" in result.found.problems[0]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_system_that_hangs_is_cut_at_the_time_limit(tmp_path: Path, silent_port: int) -> None:
    """A server that never answers costs the check its limit, then is reported as hanging."""
    started = time.monotonic()
    result = one(tmp_path, "redis", url=f"redis://127.0.0.1:{silent_port}/0", keys=["s:{user_id}"], timeout=30,
                 limit=0.5)
    assert time.monotonic() - started < 5
    assert result.found.problems == ("no answer within 0.5 s: the system hangs or is unreachable",)


def test_a_lance_table_with_its_where_columns_passes_and_a_missing_one_fails(tmp_path: Path) -> None:
    """The table opens with its where column; a where column it lacks fails, named."""
    import lancedb

    lancedb.connect(tmp_path / "lance").create_table("docs", pa.table({"user_id": pa.array([1], pa.int64())}))
    assert one(tmp_path, "vector", backend="lancedb", uri=str(tmp_path / "lance"), table="docs",
               where={"user_id": "user_id"}).ok
    failing = one(tmp_path, "vector", backend="lancedb", uri=str(tmp_path / "lance"), table="docs",
                  where={"email": "email"})
    assert failing.found.problems == ("vector it: lancedb table 'docs': no column 'email'",)


def test_a_qdrant_collection_that_does_not_exist_fails(tmp_path: Path) -> None:
    """Qdrant local mode without the collection fails, named; a folder that is not there fails, not made."""
    from qdrant_client import QdrantClient

    QdrantClient(path=str(tmp_path / "qdrant")).close()
    result = one(tmp_path, "vector", backend="qdrant", path=str(tmp_path / "qdrant"), collection="docs",
                 where={"user_id": "user_id"})
    assert result.found.problems == ("vector it: qdrant collection 'docs': no such collection",)
    elsewhere = one(tmp_path, "vector", backend="qdrant", path=str(tmp_path / "none"), collection="docs",
                    where={"user_id": "user_id"})
    assert elsewhere.found.problems == (f"the folder {str(tmp_path / 'none')!r} does not exist",)
    assert not (tmp_path / "none").exists()


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeService]:
    """A real HTTP service on a loopback port, its secret and token in the environment."""
    running = start_service(monkeypatch)
    yield running
    running.stop()


def test_an_http_service_is_reached_but_never_called(tmp_path: Path, service: FakeService,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets set and the host taking a connection pass, with a note; no call reaches the service. An unset
    secret and a closed port fail."""
    raw = service_raw(service.url)
    keys = {k: v for k, v in raw.items() if k not in ("name", "kind")}
    result = one(tmp_path, "http", **keys, verify_url=service.url + "/users/{user_id}/records")
    assert result.ok and service.calls == []
    assert result.found.notes == ("the erasing call is not tried: a service has no read-only form of it, and "
                                  "verify_url is not asked (a made-up value would tell nothing)",)
    monkeypatch.delenv(HTTP_SECRET_ENV)
    closed = {**keys, "url": f"http://127.0.0.1:{free_port()}/users/{{user_id}}"}
    problems = one(tmp_path, "http", **closed).found.problems
    assert problems[0] == f"secret_env: the environment variable {HTTP_SECRET_ENV} is not set"
    assert problems[1].startswith("127.0.0.1:") and "takes no connection" in problems[1]


def test_manual_and_stub_systems_pass_with_a_note(tmp_path: Path) -> None:
    """A manual system passes, saying a person erases it; a kind with no probe passes, saying so."""
    assert one(tmp_path, "manual", uses=["email"], instructions="Delete the tickets.").found.notes == (
        "a person erases this system: nothing for the worker to reach",)
    stub = one(tmp_path, "stub", uses=["user_id"])
    assert stub.ok and stub.found.notes == ("no read-only probe for this kind",)


def test_json_lines_on_s3_are_read_by_their_first_bytes(tmp_path: Path, s3_endpoint: str, s3_client: Any,
                                                        bucket: str) -> None:
    """On an s3:// location a JSON lines object is fetched by range: an empty one passes, one whose records
    lack the key fails, one cut by the range with the key in its first records passes."""
    put_object(s3_client, bucket, "data/2026-10-01/empty.jsonl", b"")
    put_object(s3_client, bucket, "data/2026-10-01/lacking.jsonl", b'{"uid": 1}\n')
    put_object(s3_client, bucket, "data/2026-10-01/big.jsonl",
               b"".join(b'{"user_id": %d, "pad": "%s"}\n' % (i, b"x" * 200) for i in range(8000)))
    result = one(tmp_path, "snapshot", location=f"s3://{bucket}/data/", format="jsonl", where={"user_id": "user_id"},
                 endpoint_url=s3_endpoint, region="us-east-1")
    assert result.found.problems == ("1 file(s) (2026-10-01/lacking.jsonl) of 3 have no column 'user_id' (where)",)
