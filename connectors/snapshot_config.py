"""The `snapshot` kind's configuration: where the snapshots live, their format, which columns
identify a subject, and how to reach an object store.

    [[systems]]
    name     = "clickstream"
    kind     = "snapshot"
    location = "s3://ml-data/clickstream/"   # or a local folder; one folder per snapshot
    format   = "parquet"                     # parquet | jsonl | jsonl.gz | csv | csv.gz | delta
    where    = { user_id = "user_id" }       # top-level column = identifier type, ANDed
    endpoint_url = "http://minio.internal:9000"   # the rest as for kind = "s3"
    addressing_style = "path"

`retention_hours` (delta only, default 0) is how old a removed file must be to be vacuumed."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Self

from connectors.base import ConfigReader, SystemConfig
from connectors.s3_config import ADDRESSING_STYLES, CHECKSUM_MODES, _choice, _endpoint_url, _region

FORMATS = ("parquet", "jsonl", "jsonl.gz", "csv", "csv.gz", "delta")
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class SnapshotConfig(SystemConfig):
    """A snapshot system: where its snapshots live, their format, which columns identify."""

    location: str = ""
    format: str = "parquet"
    where: tuple[tuple[str, str], ...] = ()  # (column, identifier type), ANDed
    retention_hours: float = 0.0  # delta only: how old a removed file must be to be vacuumed
    endpoint_url: str | None = None  # the rest: for s3:// locations
    region: str | None = None
    profile: str | None = None
    addressing_style: str = "auto"
    request_checksum_calculation: str | None = None
    response_checksum_validation: str | None = None

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "snapshot"`."""
        reader.only(*cls.__dataclass_fields__)  # the fields are the table's keys
        fmt = reader.text("format", "parquet")
        if fmt not in FORMATS:
            raise reader.error("format", f"unsupported format {fmt!r} (supported: {', '.join(FORMATS)})")
        where = reader.require("where", dict)
        if not where:
            raise reader.error("where", "names no column")
        location = _location(reader)
        if fmt == "delta" and location.startswith("s3://"):
            raise reader.error("location", "a Delta table must be local (a folder or a mounted bucket), not s3://")
        return cls(
            name=reader.text("name"),
            kind="snapshot",
            location=location,
            format=fmt,
            where=tuple((column, reader.identifier(f"where.{column}", t)) for column, t in where.items()),
            retention_hours=_retention_hours(reader, fmt),
            endpoint_url=_endpoint_url(reader),
            region=_region(reader),
            profile=reader.text("profile") if "profile" in reader.raw else None,
            addressing_style=_choice(reader, "addressing_style", ADDRESSING_STYLES) or "auto",
            request_checksum_calculation=_choice(reader, "request_checksum_calculation", CHECKSUM_MODES),
            response_checksum_validation=_choice(reader, "response_checksum_validation", CHECKSUM_MODES),
        )

    @property
    def identifier_types(self) -> frozenset[str]:
        """The identifier types named in `where`."""
        return frozenset(t for _, t in self.where)


def _location(reader: ConfigReader) -> str:
    location = reader.text("location")
    if location.startswith("s3://"):
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not BUCKET.fullmatch(bucket) or ".." in bucket:
            raise reader.error("location", f"{bucket!r} is not an S3 bucket name")
        if prefix and (not prefix.endswith("/") or prefix.startswith("/") or "//" in prefix):
            raise reader.error("location", f"the prefix {prefix!r} must end with '/' or it matches neighbours")
    elif "://" in location:
        raise reader.error("location", "must be a local folder or s3://BUCKET/PREFIX/")
    return location


def _retention_hours(reader: ConfigReader, fmt: str) -> float:
    if "retention_hours" not in reader.raw:
        return 0.0
    if fmt != "delta":
        raise reader.error("retention_hours", 'only applies to format = "delta"')
    value = reader.raw["retention_hours"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise reader.error("retention_hours", f"must be a number of hours, 0 or more, got {value!r}")
    return float(value)
