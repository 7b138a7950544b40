"""Snapshots in an S3 bucket (`location = "s3://BUCKET/PREFIX/"`), one key prefix per snapshot.

Reading streams an object to a file in a private temporary folder, deleted afterwards. A rewrite
uploads the new content under the same key, keeping the object's content type, metadata and
storage class, and only if the object is still the one that was read: a HeadObject just before
the upload, and `If-Match` on the upload itself (PutObject, CompleteMultipartUpload) for stores
that honour it, so a concurrent rewrite fails with TransientError instead of being lost.
In a versioned bucket the older versions are the data too: purge_history deletes each one that
still holds a subject. Object tags are not carried over to the new object.

The rewrite lock is an object, `PREFIX.erasure.lock`, created with `If-None-Match: *`; it is
stale once its lease (in its body) has passed by the store's clock. It saves two workers from
rewriting the same files at once; the conditional upload, not the lock, keeps rows from coming back.

Permissions: s3:ListBucket, s3:ListBucketVersions, s3:GetObject, s3:GetObjectVersion,
s3:PutObject, s3:DeleteObject (the lock) and s3:DeleteObjectVersion.

The client, and which errors are retried, are connectors/aws.py's, shared with the `s3` kind.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, TypeVar

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.manager import TransferManager

from connectors.aws import (
    BATCH,
    CHANGED_CODES,
    GONE_CODES,
    entry_error,
    error_code,
    http_status,
    make_client,
    map_botocore_errors,
)
from connectors.errors import TransientError
from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.locations.base import LOCK_FILE, in_snapshot

# A lock older than this, by the store's clock, was left by a worker that died. A pass that runs
# longer may see a second worker join it: wasted work, not lost rows, as uploads are conditional.
LEASE_SECONDS = 3600
LOCK_WAIT = 30.0  # how long to wait for another worker's lock before retrying later
LOCK_POLL = 1.0
KEPT = (  # what a rewrite carries over from the object read
    "ContentType", "Metadata", "StorageClass", "ContentEncoding", "ContentDisposition", "ContentLanguage",
    "CacheControl",
)
CONDITIONAL = ("PutObject", "CompleteMultipartUpload")  # the calls that write an upload's object
CHUNK = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class _Read:
    """What a reading saw: the object's ETag, and the attributes a rewrite keeps."""

    etag: str
    attributes: dict[str, Any]


class S3Folder:
    """The snapshot files under one prefix of an S3 bucket."""

    def __init__(
        self, config: SnapshotConfig, lock_wait: float = LOCK_WAIT, transfer: TransferConfig | None = None
    ) -> None:
        self.config = config
        self.bucket, _, self.prefix = config.location.removeprefix("s3://").partition("/")
        self.lock_wait = lock_wait
        self.transfer = transfer or TransferConfig()
        self._client: Any = None
        self._read: dict[str, _Read] = {}
        self._versions: dict[str, list[str]] | None = None  # noncurrent version ids per key, in a pass
        self._relist: set[str] = set()  # keys replaced since that listing
        self._in_pass = False
        self._sizes: dict[str, int] = {}  # bytes of each object, from the last listing

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use."""
        if self._client is None:
            with self._boundary("connecting"):
                self._client = make_client(self.config)
        return self._client

    def exists(self) -> bool:
        """Whether the bucket is there and reachable."""
        with self._boundary("looking for the bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if http_status(exc) == 404:
                    return False
                raise
        return True

    def data_files(self, suffixes: str | tuple[str, ...]) -> list[str]:
        """Each data object under a snapshot prefix, relative to the location, sorted."""
        endings = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
        found = []
        with self._boundary("listing"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for entry in page.get("Contents", []):
                    relative = entry["Key"][len(self.prefix) :]
                    if in_snapshot(relative, endings):
                        found.append(relative)
                        self._sizes[relative] = entry.get("Size", 0)
        return sorted(found)

    def size(self, relative: str) -> int:
        """The object's size in bytes, as last listed (or asked for)."""
        if relative not in self._sizes:
            with self._boundary(f"reading {relative}"):
                self._sizes[relative] = self.client.head_object(Bucket=self.bucket, Key=self.prefix + relative)[
                    "ContentLength"]
        return self._sizes[relative]

    @contextmanager
    def reading(self, relative: str) -> Iterator[str]:
        """A local copy of the object, deleted afterwards; its ETag is kept for replace()."""
        with _scratch(relative) as path:
            with self._boundary(f"reading {relative}"), open(path, "wb") as sink:
                response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + relative)
                shutil.copyfileobj(response["Body"], sink, CHUNK)
            self._read[relative] = _Read(response["ETag"], _kept(response))
            yield path

    def replace(self, relative: str, write: Callable[[BinaryIO], T],
                before_swap: Callable[[T], None] | None = None) -> T:
        """Upload a new version of an object under its key, if it is still the one last read."""
        key = self.prefix + relative
        with _scratch(relative) as path:
            with open(path, "wb") as sink:
                result = write(sink)
            with self._boundary(f"rewriting {relative}"):
                # Checked here as well as by If-Match: some stores (moto on multipart) ignore the header.
                head = self.client.head_object(Bucket=self.bucket, Key=key)
                read = self._read.pop(relative, None) or _Read(head["ETag"], _kept(head))
                if head["ETag"] != read.etag:
                    raise TransientError(self._changed(relative))
            if before_swap is not None:
                before_swap(result)
            with self._boundary(f"rewriting {relative}"):
                self._upload(path, key, read)
        self._relist.add(key)  # its old current version is now an older one, missing from the listing
        return result

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the location's lock object; the versions under the prefix are listed once while held."""
        with self._boundary("taking the rewrite lock"):
            version = self._acquire()
        self._in_pass, self._versions = True, None
        try:
            yield
        finally:
            self._in_pass, self._versions = False, None
            self._relist.clear()
            # Left behind, the lock only delays the next pass by its lease: never fail an erasure for it.
            with suppress(ClientError, BotoCoreError):
                self._delete_lock(version)

    @contextmanager
    def locked_file(self, relative: str) -> Iterator[None]:
        """No lock object per file: a part's upload, conditional on the object it read, fails
        (TransientError, and the part is tried again) rather than bring rows back, should another
        pass have rewritten the object meanwhile."""
        yield

    def purge_history(self, relative: str, holds: Callable[[str], bool]) -> int:
        """Delete the object's older versions whose content holds a subject; how many went."""
        key = self.prefix + relative
        with self._boundary(f"listing the versions of {relative}"):
            older = self._older_versions(key)
        doomed = []
        for version_id in older:
            with self._boundary(f"reading an older version of {relative}"), _scratch(relative) as path:
                try:
                    response = self.client.get_object(Bucket=self.bucket, Key=key, VersionId=version_id)
                except ClientError as exc:
                    if error_code(exc) in GONE_CODES:
                        continue  # deleted meanwhile
                    raise
                with open(path, "wb") as sink:
                    shutil.copyfileobj(response["Body"], sink, CHUNK)
                if holds(path):
                    doomed.append(version_id)
        with self._boundary(f"deleting older versions of {relative}"):
            removed = self._delete_versions(key, doomed)
        if self._versions is not None:
            self._versions[key] = [v for v in older if v not in removed]
        return len(removed)

    def _older_versions(self, key: str) -> list[str]:
        """The key's noncurrent version ids: in a pass from one listing of the prefix, else the key's own."""
        if not self._in_pass:
            return self._list_versions(key).get(key, [])
        if self._versions is None:
            self._relist.clear()
            self._versions = self._list_versions(self.prefix)
        if key in self._relist:
            self._relist.discard(key)
            self._versions[key] = self._list_versions(key).get(key, [])
        return self._versions.get(key, [])

    def _list_versions(self, prefix: str) -> dict[str, list[str]]:
        """Noncurrent object versions under a prefix, by key; delete markers are not data."""
        found: dict[str, list[str]] = {}
        pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for entry in page.get("Versions", []):
                if not entry.get("IsLatest"):  # "null": a version kept from before versioning was enabled
                    found.setdefault(entry["Key"], []).append(entry.get("VersionId") or "null")
        return found

    def _delete_versions(self, key: str, version_ids: list[str]) -> set[str]:
        """Delete versions of one key; the ids deleted (or gone already not counted); refusals raise."""
        deleted: set[str] = set()
        for start in range(0, len(version_ids), BATCH):
            batch = version_ids[start : start + BATCH]
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key, "VersionId": v} for v in batch], "Quiet": False},
            )
            deleted |= {d["VersionId"] for d in response.get("Deleted", []) if d.get("VersionId") in batch}
            for error in response.get("Errors", []):
                if error.get("Code") not in GONE_CODES:
                    raise entry_error(error)
        return deleted

    def _upload(self, path: str, key: str, read: _Read) -> None:
        """Upload the file to the key, single or multipart, only if its ETag is still the one read."""

        def if_match(params: dict[str, Any], **_: Any) -> None:
            if params.get("Key") == key:
                params["IfMatch"] = read.etag  # s3transfer does not pass IfMatch through itself

        events = self.client.meta.events
        hooks = [(f"before-parameter-build.s3.{op}", f"erasure-if-match-{op}") for op in CONDITIONAL]
        for event, unique_id in hooks:
            events.register(event, if_match, unique_id=unique_id)
        try:
            with TransferManager(self.client, self.transfer) as manager:
                manager.upload(path, self.bucket, key, extra_args=read.attributes).result()
        finally:
            for event, unique_id in hooks:
                events.unregister(event, unique_id=unique_id)

    def _acquire(self) -> str | None:
        """Create the lock object, waiting for a live one, taking over a stale one; its version id."""
        key = self.prefix + LOCK_FILE
        body = json.dumps({"lease_seconds": LEASE_SECONDS, "holder": f"{socket.gethostname()}:{os.getpid()}"})
        deadline = time.monotonic() + self.lock_wait
        retry_now = True  # a lock found stale (and deleted) or just released is worth one try at once
        while True:
            try:
                made = self.client.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), IfNoneMatch="*")
                return made.get("VersionId")
            except ClientError as exc:
                if error_code(exc) not in CHANGED_CODES:
                    raise
            if not self._live_lock(key) and retry_now:
                retry_now = False
                continue
            if time.monotonic() >= deadline:
                raise TransientError(f"{self._where('taking the rewrite lock')}: another erasure holds it")
            time.sleep(LOCK_POLL)

    def _live_lock(self, key: str) -> bool:
        """Whether the lock object is there and within its lease; a stale one is deleted."""
        try:
            lock = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in GONE_CODES:
                return False
            raise
        try:
            lease = float(json.loads(lock["Body"].read())["lease_seconds"])
        except (ValueError, KeyError, TypeError):
            lease = LEASE_SECONDS
        date = lock["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        if now < lock["LastModified"] + timedelta(seconds=lease):
            return True
        self._delete_lock(lock.get("VersionId"))
        return False

    def _delete_lock(self, version_id: str | None) -> None:
        """Delete one version of the lock object (leaving no delete marker), or the lock if unversioned."""
        versioned = {"VersionId": version_id} if version_id and version_id != "null" else {}
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + LOCK_FILE, **versioned)

    def _where(self, action: str) -> str:
        return f"snapshot {self.config.name}: {action} in bucket {self.bucket!r}"

    def _changed(self, relative: str) -> str:
        return f"{self._where(f'rewriting {relative}')}: the object changed since it was read; nothing overwritten"

    def _boundary(self, action: str) -> AbstractContextManager[None]:
        """Translate botocore's errors into the project's, naming the system and bucket."""
        return map_botocore_errors(self._where(action))


def _kept(response: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a GetObject or HeadObject answer that a rewrite carries over."""
    return {k: response[k] for k in KEPT if response.get(k)}


@contextmanager
def _scratch(relative: str) -> Iterator[str]:
    """A path in a new private temporary folder (mode 0700), deleted with it on exit."""
    name = relative.rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="erasure-") as folder:
        yield os.path.join(folder, name if len(name.encode()) <= 200 else "object" + name[-40:])
