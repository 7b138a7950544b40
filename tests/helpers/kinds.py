"""Connectors: one factory per kind, each reading its system table as start-up reads erasure.toml."""


from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from connectors.base import ConfigReader, Subject, SystemConfig
from connectors.http.config import HttpConfig
from connectors.http.connector import HttpConnector
from connectors.manual.config import ManualConfig
from connectors.manual.connector import ManualConnector
from connectors.normalize import Fold
from connectors.redis.config import RedisConfig
from connectors.redis.connector import RedisConnector
from connectors.s3.config import S3Config
from connectors.s3.connector import S3Connector
from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.connector import SnapshotConnector
from connectors.snapshot.locations.local import LocalFolder
from connectors.snapshot.locations.s3 import S3Folder
from connectors.sql.config import SqlConfig
from connectors.sql.connector import SqlConnector
from connectors.stub import StubConfig, StubConnector
from connectors.vector.config import VectorConfig
from connectors.vector.connector import VectorConnector

IDENTIFIER_TYPES = frozenset({"user_id", "email"})
Folds = frozenset[str] | Mapping[str, Fold]  # the identifier types, or each one's fold
C = TypeVar("C", bound=SystemConfig)


def system_config(config_class: type[C], raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> C:
    """A system table parsed as start-up parses it; its errors name erasure.toml, the system and the key."""
    return config_class.read(ConfigReader("erasure.toml", f"system {raw.get('name')!r}", raw, folds))


def sql_connector(raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> SqlConnector:
    """A sql connector over the system table."""
    return SqlConnector(system_config(SqlConfig, raw, folds))


def s3_connector(raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> S3Connector:
    """An s3 connector over the system table."""
    return S3Connector(system_config(S3Config, raw, folds))


def snapshot_connector(raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> SnapshotConnector:
    """A snapshot connector over the system table."""
    return SnapshotConnector(system_config(SnapshotConfig, raw, folds))


def redis_connector(raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> RedisConnector:
    """A redis connector over the system table."""
    return RedisConnector(system_config(RedisConfig, raw, folds))


def vector_connector(raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> VectorConnector:
    """A vector connector over the system table."""
    return VectorConnector(system_config(VectorConfig, raw, folds))


def stub_connector(raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> StubConnector:
    """The in-package stub over the system table."""
    return StubConnector(system_config(StubConfig, raw, folds))


def http_connector(raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> HttpConnector:
    """An http connector over the system table (its secrets read from the environment now)."""
    return HttpConnector(system_config(HttpConfig, raw, folds))


def manual_connector(raw: Mapping[str, Any], folds: Folds = IDENTIFIER_TYPES) -> ManualConnector:
    """A manual system's connector over the system table (it never erases: a person does)."""
    return ManualConnector(system_config(ManualConfig, raw, folds))


def user(*ids: str) -> Subject:
    """A subject known by user ids."""
    return Subject({"user_id": ids})


def uploads_raw(bucket: str, endpoint: str, **overrides: Any) -> dict[str, Any]:
    """The contract's `uploads` s3 system table, pointed at a test bucket."""
    raw = {
        "name": "uploads",
        "kind": "s3",
        "bucket": bucket,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "prefixes": ["avatars/{user_id}/"],
        "keys": ["exports/{user_id}.zip"],
    }
    return raw | overrides


JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


def s3_snapshot_config(location: str, endpoint: str) -> SnapshotConfig:
    """A clickstream snapshot system of JSON lines at the location, its store at the endpoint."""
    return system_config(SnapshotConfig, {
        "name": "clickstream", "kind": "snapshot", "location": location, "format": "jsonl",
        "where": {"user_id": "user_id"}, "endpoint_url": endpoint, "region": "us-east-1"}, frozenset({"user_id"}))


def s3_folder(bucket: str, endpoint: str, **options: Any) -> S3Folder:
    """The `data/` prefix of the bucket as a snapshot location."""
    return S3Folder(s3_snapshot_config(f"s3://{bucket}/data/", endpoint), **options)


def put_object(s3: Any, bucket: str, key: str, body: bytes = b'{"user_id": "7"}\n', **extra: Any) -> dict[str, Any]:
    """Upload one object."""
    return dict(s3.put_object(Bucket=bucket, Key=key, Body=body, **extra))


def object_body(s3: Any, bucket: str, key: str) -> bytes:
    """The current content of an object."""
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def object_versions(s3: Any, bucket: str, key: str) -> list[str]:
    """The version ids of one key, newest first."""
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [v["VersionId"] for v in listed if v["Key"] == key]


class VersionedFolder(LocalFolder):
    """A real folder that keeps each file's older versions as files under .versions/."""

    def purge_history(self, rel: str, holds: Any) -> int:
        """Delete the older versions holding a subject, as an object store's location would."""
        purged = 0
        for old in sorted((self.root / ".versions" / rel).glob("v*")):
            if holds(str(old)):
                old.unlink()
                purged += 1
        return purged
