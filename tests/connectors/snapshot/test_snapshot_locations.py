"""Snapshot locations on their own: a local folder, and an S3 prefix on moto's server over a socket."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from connectors.errors import PermanentError, TransientError
from connectors.snapshot.locations import open_location
from connectors.snapshot.locations.base import LOCK_FILE
from connectors.snapshot.locations.local import LocalFolder
from connectors.snapshot.locations.s3 import S3Folder
from tests.helpers import (
    JSONL_SUFFIXES,
    free_port,
    object_body,
    object_versions,
    put_object,
    s3_folder,
    s3_snapshot_config,
)

MIB = 1 << 20


def holds_alice(path: str) -> bool:
    """Whether a downloaded file mentions alice."""
    return b"alice" in Path(path).read_bytes()


# --- a local folder -------------------------------------------------------------------------


def test_folder_lists_files_of_every_suffix(tmp_path: Path) -> None:
    """data_files takes a tuple of suffixes and lists files ending in any of them, sorted."""
    for rel in ("s2/b.jsonl", "s1/deep/c.jsonl.gz", "s1/a.jsonl", "s1/d.csv", "root.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}\n")
    assert LocalFolder(tmp_path).data_files(JSONL_SUFFIXES) == ["s1/a.jsonl", "s1/deep/c.jsonl.gz", "s2/b.jsonl"]


def test_folder_still_takes_one_suffix(tmp_path: Path) -> None:
    """A single suffix as a string still works during the move to tuples."""
    for rel in ("s1/a.jsonl", "s1/b.jsonl.gz"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}\n")
    assert LocalFolder(tmp_path).data_files(".jsonl") == ["s1/a.jsonl"]


def test_folder_skips_hidden_files(tmp_path: Path) -> None:
    """Dotfiles, _underscored files and anything under hidden folders are not data."""
    for rel in ("s1/.a.jsonl", "s1/_b.jsonl", "_temporary/0/c.jsonl", ".git/d.jsonl", "s1/ok.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}\n")
    assert LocalFolder(tmp_path).data_files(JSONL_SUFFIXES) == ["s1/ok.jsonl"]


def test_folder_reading_gives_the_file(tmp_path: Path) -> None:
    """reading yields a path holding the file's content."""
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1/a.jsonl").write_bytes(b"rows\n")
    with LocalFolder(tmp_path).reading("s1/a.jsonl") as path:
        assert Path(path).read_bytes() == b"rows\n"


def test_folder_has_no_history(tmp_path: Path) -> None:
    """A folder keeps no older versions: purge_history removes none and reads none."""
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1/a.jsonl").write_bytes(b"alice\n")
    asked: list[str] = []
    assert LocalFolder(tmp_path).purge_history("s1/a.jsonl", lambda path: asked.append(path) or True) == 0
    assert asked == []


def test_open_location_chooses_by_scheme(tmp_path: Path, s3_endpoint: str) -> None:
    """An s3:// location opens an S3 folder; anything else a local one."""
    assert isinstance(open_location(s3_snapshot_config("s3://some-bucket/data/", s3_endpoint)), S3Folder)
    local = open_location(s3_snapshot_config(str(tmp_path), s3_endpoint))
    assert isinstance(local, LocalFolder) and local.root == tmp_path


# --- an S3 prefix: listing and reading ------------------------------------------------------


def test_s3_lists_data_objects_under_snapshot_prefixes(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """data_files lists objects of any suffix one prefix level down or deeper, sorted, and nothing else."""
    for key in ("data/s2/b.jsonl", "data/s1/deep/c.jsonl.gz", "data/s1/a.jsonl", "data/s1/d.csv",
                "data/root.jsonl", "data-old/s1/e.jsonl", "other/s1/f.jsonl", "data/s1/"):
        put_object(s3_client, bucket, key)
    listed = s3_folder(bucket, s3_endpoint).data_files(JSONL_SUFFIXES)
    assert listed == ["s1/a.jsonl", "s1/deep/c.jsonl.gz", "s2/b.jsonl"]


def test_s3_skips_hidden_objects(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """Dotted and underscored names, at any level, are not data; neither is the lock object."""
    for key in ("data/s1/.a.jsonl", "data/s1/_b.jsonl", "data/_temporary/0/c.jsonl", "data/.x/d.jsonl",
                "data/s1//e.jsonl", f"data/{LOCK_FILE}", "data/s1/ok.jsonl"):
        put_object(s3_client, bucket, key)
    assert s3_folder(bucket, s3_endpoint).data_files(JSONL_SUFFIXES) == ["s1/ok.jsonl"]


def test_s3_lists_past_one_page(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """Objects spread over many ListObjectsV2 pages are all listed (pages of 2 here, not 1000)."""
    for i in range(5):
        put_object(s3_client, bucket, f"data/s1/{i}.jsonl", b"")
    location = s3_folder(bucket, s3_endpoint)
    pages: list[dict[str, Any]] = []

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params["MaxKeys"] = 2
        pages.append(params)

    location.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", small_pages)
    assert location.data_files(JSONL_SUFFIXES) == [f"s1/{i}.jsonl" for i in range(5)]
    assert len(pages) == 3


def test_s3_reading_downloads_to_a_private_temp_file(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """reading yields a local file with the object's content, in a 0700 folder, gone afterwards."""
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"rows\n")
    with s3_folder(bucket, s3_endpoint).reading("s1/a.jsonl") as path:
        assert Path(path).read_bytes() == b"rows\n"
        assert path.endswith("a.jsonl")
        assert os.stat(Path(path).parent).st_mode & 0o777 == 0o700
    assert not Path(path).parent.exists()


def test_s3_exists_is_the_bucket(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """A bucket that is there exists, even with nothing under the prefix; a missing one does not."""
    assert s3_folder(bucket, s3_endpoint).exists()
    assert not s3_folder(f"missing-{uuid.uuid4().hex[:12]}", s3_endpoint).exists()


def test_s3_missing_bucket_is_permanent(s3_endpoint: str) -> None:
    """Listing a bucket that is not there fails for good, naming the system and bucket."""
    name = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(PermanentError, match=f"snapshot clickstream: listing in bucket '{name}': NoSuchBucket"):
        s3_folder(name, s3_endpoint).data_files(JSONL_SUFFIXES)


def test_s3_unreachable_endpoint_is_transient(bucket: str) -> None:
    """An endpoint nobody listens on may come back: TransientError."""
    with pytest.raises(TransientError, match="endpoint unreachable"):
        s3_folder(bucket, f"http://127.0.0.1:{free_port()}").exists()


def test_s3_object_deleted_since_listing_is_transient(bucket: str, s3_endpoint: str) -> None:
    """An object gone between listing and reading is worth listing again: TransientError."""
    with (
        pytest.raises(TransientError, match="reading s1/a.jsonl"),
        s3_folder(bucket, s3_endpoint).reading("s1/a.jsonl"),
    ):
        pass


# --- an S3 prefix: rewriting ---------------------------------------------------------------


def rewrite(location: S3Folder, rel: str, content: bytes) -> str:
    """Read an object, then replace it with new content; write's result."""
    with location.reading(rel):
        return location.replace(rel, lambda sink: sink.write(content) and "written")


def test_s3_replace_swaps_content_and_keeps_attributes(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """The new content goes under the same key with the old content type and user metadata."""
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\nbob\n", ContentType="application/x-ndjson",
        Metadata={"owner": "ml-team"}, CacheControl="no-cache")
    assert rewrite(s3_folder(bucket, s3_endpoint), "s1/a.jsonl", b"bob\n") == "written"
    head = s3_client.head_object(Bucket=bucket, Key="data/s1/a.jsonl")
    assert object_body(s3_client, bucket, "data/s1/a.jsonl") == b"bob\n"
    assert (head["ContentType"], head["Metadata"], head["CacheControl"]) == (
        "application/x-ndjson", {"owner": "ml-team"}, "no-cache")


def test_s3_replace_leaves_other_objects_alone(s3_client: Any, versioned: str, s3_endpoint: str) -> None:
    """Objects not replaced keep their ETag and their only version."""
    for key in ("data/s1/a.jsonl", "data/s1/b.jsonl", "data/s2/c.jsonl"):
        put_object(s3_client, versioned, key, key.encode())
    before = {k: (s3_client.head_object(Bucket=versioned, Key=k)["ETag"], object_versions(s3_client, versioned, k))
              for k in ("data/s1/b.jsonl", "data/s2/c.jsonl")}
    rewrite(s3_folder(versioned, s3_endpoint), "s1/a.jsonl", b"new\n")
    after = {k: (s3_client.head_object(Bucket=versioned, Key=k)["ETag"], object_versions(s3_client, versioned, k))
             for k in before}
    assert after == before
    assert len(object_versions(s3_client, versioned, "data/s1/a.jsonl")) == 2


def test_s3_replace_large_object_in_parts(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """Content above the multipart threshold is uploaded in parts, attributes kept."""
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"old\n", ContentType="application/x-ndjson", Metadata={"k": "v"})
    transfer = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    content = os.urandom(11 * MIB)
    rewrite(s3_folder(bucket, s3_endpoint, transfer=transfer), "s1/a.jsonl", content)
    head = s3_client.head_object(Bucket=bucket, Key="data/s1/a.jsonl")
    assert head["ETag"].endswith('-3"')  # three parts
    assert (head["ContentType"], head["Metadata"]) == ("application/x-ndjson", {"k": "v"})
    assert object_body(s3_client, bucket, "data/s1/a.jsonl") == content


def test_s3_replace_failing_write_keeps_the_object(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """When writing the new content fails, nothing is uploaded."""
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\n")
    location = s3_folder(bucket, s3_endpoint)

    def broken(sink: Any) -> None:
        sink.write(b"half")
        raise ValueError("disk trouble")

    with location.reading("s1/a.jsonl"), pytest.raises(ValueError):
        location.replace("s1/a.jsonl", broken)
    assert object_body(s3_client, bucket, "data/s1/a.jsonl") == b"alice\n"


def test_s3_change_after_reading_is_not_overwritten(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """An object rewritten by someone else after it was read is left as they wrote it: TransientError."""
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\n")
    location = s3_folder(bucket, s3_endpoint)
    with location.reading("s1/a.jsonl"):
        put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\ncarol\n")
        with pytest.raises(TransientError, match="changed since it was read; nothing overwritten"):
            location.replace("s1/a.jsonl", lambda sink: sink.write(b""))
    assert object_body(s3_client, bucket, "data/s1/a.jsonl") == b"alice\ncarol\n"


def test_s3_change_during_upload_is_refused_by_if_match(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """A rewrite landing between the last check and the upload makes the conditional upload fail."""
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\n")
    location = s3_folder(bucket, s3_endpoint)

    def concurrent_writer(params: dict[str, Any], **_: Any) -> None:
        if params["url_path"].endswith("/data/s1/a.jsonl"):
            put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\ncarol\n")

    location.client.meta.events.register("before-call.s3.PutObject", concurrent_writer)
    with location.reading("s1/a.jsonl"), pytest.raises(TransientError, match="PreconditionFailed"):
        location.replace("s1/a.jsonl", lambda sink: sink.write(b""))
    assert object_body(s3_client, bucket, "data/s1/a.jsonl") == b"alice\ncarol\n"


# --- an S3 prefix: older versions -----------------------------------------------------------


def test_s3_purge_removes_older_versions_that_hold(s3_client: Any, versioned: str, s3_endpoint: str) -> None:
    """Exactly the noncurrent versions holding the subject go; the others and the current one stay."""
    key = "data/s1/a.jsonl"
    ids = [put_object(s3_client, versioned, key, text)["VersionId"] for text in (b"alice\n", b"bob\n", b"alice\nbob\n")]
    current = put_object(s3_client, versioned, key, b"alice\ncarol\n")["VersionId"]
    assert s3_folder(versioned, s3_endpoint).purge_history("s1/a.jsonl", holds_alice) == 2
    assert sorted(object_versions(s3_client, versioned, key)) == sorted([ids[1], current])


def test_s3_purge_removes_the_version_just_replaced(s3_client: Any, versioned: str, s3_endpoint: str) -> None:
    """In a pass, the version a rewrite made noncurrent is found and removed, though listed before."""
    put_object(s3_client, versioned, "data/s1/a.jsonl", b"alice\nbob\n")
    put_object(s3_client, versioned, "data/s1/b.jsonl", b"bob\n")
    location = s3_folder(versioned, s3_endpoint)
    with location.locked():
        assert location.purge_history("s1/b.jsonl", holds_alice) == 0  # lists the prefix
        rewrite(location, "s1/a.jsonl", b"bob\n")
        assert location.purge_history("s1/a.jsonl", holds_alice) == 1
    assert len(object_versions(s3_client, versioned, "data/s1/a.jsonl")) == 1
    assert object_body(s3_client, versioned, "data/s1/a.jsonl") == b"bob\n"


def test_s3_purge_lists_versions_once_per_pass(s3_client: Any, versioned: str, s3_endpoint: str) -> None:
    """Within one lock, purging many files, with older versions or none, lists the prefix's versions once."""
    for i in range(4):
        put_object(s3_client, versioned, f"data/s1/{i}.jsonl", b"alice\n")
        if i % 2:
            put_object(s3_client, versioned, f"data/s1/{i}.jsonl", b"bob\n")
    location = s3_folder(versioned, s3_endpoint)
    listings: list[str] = []
    location.client.meta.events.register("before-call.s3.ListObjectVersions", lambda **kw: listings.append("x"))
    with location.locked():
        removed = [location.purge_history(f"s1/{i}.jsonl", holds_alice) for i in range(4)]
    assert removed == [0, 1, 0, 1]
    assert len(listings) == 1


def test_s3_purge_removes_a_version_from_before_versioning(
    s3_client: Any, bucket: str, s3_endpoint: str
) -> None:
    """The "null" version left from before versioning was enabled is data too."""
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\n")
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"bob\n")
    assert s3_folder(bucket, s3_endpoint).purge_history("s1/a.jsonl", holds_alice) == 1
    assert "null" not in object_versions(s3_client, bucket, "data/s1/a.jsonl")


def test_s3_purge_leaves_delete_markers_and_neighbours(s3_client: Any, versioned: str, s3_endpoint: str) -> None:
    """Only versions of the exact key are read: `a.jsonl` never takes `a.jsonl.gz`'s versions."""
    put_object(s3_client, versioned, "data/s1/a.jsonl.gz", b"alice\n")
    put_object(s3_client, versioned, "data/s1/a.jsonl.gz", b"bob\n")
    put_object(s3_client, versioned, "data/s1/a.jsonl", b"bob\n")
    assert s3_folder(versioned, s3_endpoint).purge_history("s1/a.jsonl", holds_alice) == 0
    assert len(object_versions(s3_client, versioned, "data/s1/a.jsonl.gz")) == 2


def test_s3_purge_in_unversioned_bucket_is_nothing(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """An unversioned bucket keeps no older versions: none removed, none read."""
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\n")
    put_object(s3_client, bucket, "data/s1/a.jsonl", b"alice\nbob\n")
    asked: list[str] = []
    assert s3_folder(bucket, s3_endpoint).purge_history("s1/a.jsonl", lambda p: asked.append(p) or True) == 0
    assert asked == []
    assert object_body(s3_client, bucket, "data/s1/a.jsonl") == b"alice\nbob\n"


# --- an S3 prefix: the lock -----------------------------------------------------------------


def test_s3_lock_is_an_object_removed_on_exit(s3_client: Any, versioned: str, s3_endpoint: str) -> None:
    """While held the lock object is there; afterwards no version or delete marker of it is left."""
    with s3_folder(versioned, s3_endpoint).locked():
        assert s3_client.head_object(Bucket=versioned, Key=f"data/{LOCK_FILE}")
    listed = s3_client.list_object_versions(Bucket=versioned, Prefix=f"data/{LOCK_FILE}")
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []


def test_s3_lock_held_elsewhere_is_transient(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """A second worker finding a live lock gives up for now with TransientError."""
    with s3_folder(bucket, s3_endpoint).locked():
        with pytest.raises(TransientError, match="another erasure holds it"):
            with s3_folder(bucket, s3_endpoint, lock_wait=0).locked():
                pass
        assert s3_client.head_object(Bucket=bucket, Key=f"data/{LOCK_FILE}")


def test_s3_stale_lock_is_taken_over(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """A lock past its lease, left by a worker that died, does not block the next one."""
    put_object(s3_client, bucket, f"data/{LOCK_FILE}", json.dumps({"lease_seconds": 0}).encode())
    entered = False
    with s3_folder(bucket, s3_endpoint, lock_wait=0).locked():
        entered = True
    assert entered
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix=f"data/{LOCK_FILE}").get("KeyCount") == 0
