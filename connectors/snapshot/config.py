"""The `snapshot` kind's configuration: where the snapshots live, their format, which columns
identify a subject, and how to reach an object store.

    [[systems]]
    name     = "clickstream"
    kind     = "snapshot"
    location = "s3://ml-data/clickstream/"   # or a local folder; one folder per snapshot
    format   = "parquet"                     # parquet | jsonl | jsonl.gz | csv | csv.gz | delta
    where    = { user_id = "user_id", "meta.email" = "email" }  # column or dotted path = identifier type, ANDed
    match    = { "meta.email" = "exact" }    # optional: stored folded already, compared as stored
    on_missing_column = "fail"               # or "skip": leave a file lacking a where column, and say so
    endpoint_url = "http://minio.internal:9000"   # the rest as for kind = "s3"
    addressing_style = "path"

A `where` column's stored text is compared after its identifier type's fold (NFC, then its steps),
unless `match` says it is stored folded already (`match = "exact"` for all). A dotted name is a
path into nested fields (connectors/snapshot/paths.py), plain names joined by dots, except in
CSV, where it is a header name; TOML's own dotted key, `{ meta.email = "email" }`, is the same.
A file lacking a `where` column fails the system, or with `on_missing_column = "skip"` is left
untouched and listed in the outcome's `files_skipped`.
`retention_hours` (delta only, default 0) is how old a removed file must be to be vacuumed."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from connectors.base import ConfigReader, SystemConfig
from connectors.s3.config import ADDRESSING_STYLES, CHECKSUM_MODES, _choice, _endpoint_url, _region
from connectors.snapshot.keyed import Keyed, folds_of

FORMATS = ("parquet", "jsonl", "jsonl.gz", "csv", "csv.gz", "delta")
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")  # a dotted where name (not CSV)
ON_MISSING_COLUMN = ("fail", "skip")
PARSED = ("exact", "folds")  # fields read from other keys (`match`, the identifier types): not keys


@dataclass(frozen=True)
class SnapshotConfig(Keyed, SystemConfig):
    """A snapshot system: where its snapshots live, their format, which columns identify."""

    training: bool = field(default=True, kw_only=True)  # snapshots are what models are trained on
    location: str = ""
    format: str = "parquet"
    on_missing_column: str = "fail"  # or "skip": a file lacking a where column is left and listed
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
        reader.only(*(f for f in cls.__dataclass_fields__ if f not in PARSED), "match")  # the fields are its keys
        fmt = reader.text("format", "parquet")
        if fmt not in FORMATS:
            raise reader.error("format", f"unsupported format {fmt!r} (supported: {', '.join(FORMATS)})")
        where = _where(reader, fmt)
        exact = _exact(reader, where)
        location = _location(reader)
        if fmt == "delta" and location.startswith("s3://"):
            raise reader.error("location", "a Delta table must be local (a folder or a mounted bucket), not s3://")
        return cls(
            name=reader.text("name"),
            kind="snapshot",
            location=location,
            format=fmt,
            where=where,
            exact=exact,
            folds=folds_of(reader, where, exact),
            on_missing_column=_choice(reader, "on_missing_column", ON_MISSING_COLUMN) or "fail",
            retention_hours=_retention_hours(reader, fmt),
            endpoint_url=_endpoint_url(reader),
            region=_region(reader),
            profile=reader.text("profile") if "profile" in reader.raw else None,
            addressing_style=_choice(reader, "addressing_style", ADDRESSING_STYLES) or "auto",
            request_checksum_calculation=_choice(reader, "request_checksum_calculation", CHECKSUM_MODES),
            response_checksum_validation=_choice(reader, "response_checksum_validation", CHECKSUM_MODES),
        )


def _where(reader: ConfigReader, fmt: str) -> tuple[tuple[str, str], ...]:
    """`where`: column names (dotted paths but in CSV) and the identifier types they hold."""
    where = dict(_flat(reader.require("where", dict)))
    if not where:
        raise reader.error("where", "names no column")
    for column in where:
        if not column.strip():
            raise reader.error("where", "a column name must not be empty")
        if "." in column and not fmt.startswith("csv") and not PATH.fullmatch(column):
            raise reader.error(f"where.{column}", "a dotted path is plain names (letters, digits, _) joined by '.'")
    return tuple((column, reader.identifier(f"where.{column}", t)) for column, t in where.items())


def _exact(reader: ConfigReader, where: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """The where columns `match` says are compared as stored, its nested tables read as `where`'s."""
    raw = dict(reader.raw)
    if isinstance(raw.get("match"), Mapping):
        raw["match"] = dict(_flat(raw["match"]))
    return ConfigReader(reader.path, reader.place, raw, reader.folds).exact_columns(column for column, _ in where)


def _flat(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """A table's entries with nested tables' keys joined by dots: TOML reads `{ meta.user_id = ... }`
    as a nested table, which is the path "meta.user_id"."""
    for key, value in table.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


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
