"""A snapshot location as discovery sees it: the columns of its newest snapshot's files (Parquet, JSON
lines, CSV; or a Delta table's schema), nested fields as dotted names, and at most SAMPLE_ROWS rows
tallied against the identifier types' patterns. Only the first rows are read; values are counted,
never kept or logged."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.formats import DELIMITERS, suffixes
from connectors.snapshot.locations import open_location
from worker.discover.identifiers import IdType
from worker.discover.model import SAMPLE_ROWS, Column, Table, tally
from worker.errors import ErasureError

log = structlog.get_logger("erasure.discover")
FORMATS = ("parquet", "jsonl", "jsonl.gz", "csv", "csv.gz", "delta")
DEPTH = 3  # nested fields deeper than this are not named


def read_location(location: str, fmt: str, types: list[IdType]) -> Table:
    """The location's columns and tallies, as a table named after its last folder."""
    name = PurePosixPath(location.rstrip("/")).name or "snapshots"
    records, kinds = _delta(location) if fmt == "delta" else _files(location, fmt)
    columns = {c: Column(c, kind) for c, kind in kinds.items()}
    flat = [dict(_flatten(record)) for record in records]
    table = Table(name, columns, sampled=len(flat))
    table.tallies = {c: tally((row.get(c) for row in flat), types) for c in columns}
    log.info("discover.sampled", location=location, rows=len(flat), columns=len(columns))
    return table


def _files(location: str, fmt: str) -> tuple[list[Any], dict[str, str]]:
    """The first rows of the newest snapshot folder's files, and their columns' kinds."""
    folder = open_location(SnapshotConfig(name="discover", kind="snapshot", location=location, format=fmt))
    if not folder.exists():
        raise ErasureError(f"snapshot location {location}: not found")
    files = folder.data_files(suffixes(fmt))
    if not files:
        raise ErasureError(f"snapshot location {location}: no {fmt} file inside a snapshot folder")
    newest = max(rel.split("/")[0] for rel in files)
    records: list[Any] = []
    kinds: dict[str, str] = {}
    for rel in (rel for rel in files if rel.split("/")[0] == newest):
        if len(records) >= SAMPLE_ROWS:
            break
        with folder.reading(rel) as path:
            if fmt == "parquet":
                found, schema = _parquet([path], SAMPLE_ROWS - len(records))
                kinds.update(schema)
            else:
                found = list(_text_records(path, fmt, SAMPLE_ROWS - len(records)))
                for record in found:
                    for column, value in _flatten(record):
                        if kinds.get(column) in (None, "other"):
                            kinds[column] = "text" if fmt.startswith("csv") else _json_kind(value)
        records += found
    return records, kinds


def _delta(location: str) -> tuple[list[Any], dict[str, str]]:
    """A Delta table's schema and the first rows of its current files."""
    from deltalake import DeltaTable  # the optional [delta] extra
    from deltalake.exceptions import DeltaError, TableNotFoundError  # the same extra

    try:
        table = DeltaTable(location)
        schema = pa.schema(table.schema().to_arrow())
        paths = [uri.removeprefix("file://") for uri in table.file_uris()]
    except (TableNotFoundError, DeltaError, OSError) as exc:
        raise ErasureError(f"snapshot location {location}: not a Delta table ({type(exc).__name__})") from None
    records, _ = _parquet(paths, SAMPLE_ROWS)
    return records, dict(_arrow_kinds(schema))


def _parquet(paths: list[str], limit: int) -> tuple[list[Any], dict[str, str]]:
    """At most `limit` rows of the files, as records, and their schema's kinds."""
    records: list[Any] = []
    kinds: dict[str, str] = {}
    for path in paths:
        with pq.ParquetFile(path) as parquet:
            kinds.update(_arrow_kinds(parquet.schema_arrow))
            for batch in parquet.iter_batches(batch_size=max(1, limit - len(records))):
                records += batch.to_pylist()[: limit - len(records)]
                break
        if len(records) >= limit:
            break
    return records, kinds


def _text_records(path: str, fmt: str, limit: int) -> Iterator[Any]:
    """At most `limit` records of a JSON lines or CSV file (gzipped if it ends .gz)."""
    raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115 - closed below
    with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        if fmt.startswith("jsonl"):
            lines = (line for line in text if line.strip())
            for _, line in zip(range(limit), lines, strict=False):
                yield json.loads(line)
            return
        header = text.readline()
        delimiter = max(DELIMITERS, key=lambda d: (header.count(d), -DELIMITERS.index(d)))
        reader = csv.DictReader(text, fieldnames=next(csv.reader([header], delimiter=delimiter)), delimiter=delimiter)
        yield from (row for _, row in zip(range(limit), reader, strict=False))


def _flatten(record: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """A record's fields, nested objects' fields as dotted names (lists are not entered)."""
    if not isinstance(record, Mapping):
        return
    for key, value in record.items():
        if isinstance(value, Mapping) and depth < DEPTH:
            yield from _flatten(value, f"{prefix}{key}.", depth + 1)
        elif not isinstance(value, Mapping | list):
            yield f"{prefix}{key}", value


def _arrow_kinds(schema: pa.Schema, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """Each (nested) field's dotted name and kind."""
    for arrow_field in schema:
        kind = arrow_field.type
        if pa.types.is_struct(kind) and depth < DEPTH:
            yield from _arrow_kinds(pa.schema(list(kind)), f"{prefix}{arrow_field.name}.", depth + 1)
        elif not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind)):
            yield f"{prefix}{arrow_field.name}", _arrow_kind(kind)


def _arrow_kind(kind: pa.DataType) -> str:
    checks = ((pa.types.is_boolean, "boolean"), (pa.types.is_integer, "integer"), (pa.types.is_floating, "number"),
              (pa.types.is_decimal, "number"), (pa.types.is_timestamp, "datetime"), (pa.types.is_date, "date"),
              (pa.types.is_string, "text"), (pa.types.is_large_string, "text"))
    return next((name for check, name in checks if check(kind)), "other")


def _json_kind(value: Any) -> str:
    if value is None:
        return "other"
    return {bool: "boolean", int: "integer", float: "number", str: "text"}.get(type(value), "other")


def system_name(location: str) -> str:
    """A system name from a location's last folder."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", PurePosixPath(location.rstrip("/")).name).strip("-._")
    return name[:64] or "snapshots"
