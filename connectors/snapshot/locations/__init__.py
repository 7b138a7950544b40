"""Where a snapshot system's files live: a local folder (local.py) or an S3 prefix (s3.py)."""

from __future__ import annotations

from pathlib import Path

from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.locations.base import Location
from connectors.snapshot.locations.local import LocalFolder


def open_location(config: SnapshotConfig) -> Location:
    """The location a snapshot system names: `s3://BUCKET/PREFIX/` or a local folder."""
    if config.location.startswith("s3://"):
        from connectors.snapshot.locations.s3 import S3Folder  # boto3, loaded only for an s3:// location

        return S3Folder(config)
    return LocalFolder(Path(config.location))
