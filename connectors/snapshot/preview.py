"""The snapshot kind's look without acting: the snapshots, files and rows erase() would rewrite, found by
its own count pass (`SnapshotConnector.locate`, which reads each file once and changes nothing); and,
for an export (Art. 15 access), the subject's rows of each snapshot, read with the formats' own readers
and matched as erase() matches them (Parquet: the row groups whose statistics leave room for a value;
JSON lines and CSV: record by record), one JSON line per row, the files in order.

A Delta table's rows are counted (its engine's locate) but not exported: the export says so."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

import pyarrow.parquet as pq

from connectors.base import Part, Preview, SnapshotHit, Subject
from connectors.records import record
from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.formats import DELIMITERS, QUOTED, CsvFormat, JsonLinesFormat, ParquetFormat, format_of
from connectors.snapshot.locations.base import Location
from connectors.snapshot.match import ArrowMatch, Sought

DELTA_NOTE = "a Delta table's rows are counted by locate but not exported"


class Snapshots(Protocol):
    """The snapshot connector as read here (connector.py imports this module, never the reverse)."""

    config: SnapshotConfig

    @property
    def location(self) -> Location:
        """Where the files are."""

    def locate(self, subject: Subject) -> tuple[SnapshotHit, ...]: ...

    def _counts(self, sought: Sought, skipped: list[dict[str, Any]]) -> dict[str, list[int]]: ...

    def _errors(self, rel: str) -> AbstractContextManager[None]: ...

    def _unless_missing(self, rel: str, skipped: list[dict[str, Any]],
                        older: bool = False) -> AbstractContextManager[None]: ...


def look(snapshots: Snapshots, subject: Subject) -> Preview:
    """Per snapshot, the files holding the subject's rows and how many rows, as locate() finds them."""
    hits = snapshots.locate(subject)
    found = {hit.snapshot: {"files": list(hit.files), "rows": hit.rows} for hit in hits}
    return Preview(looked=True, items=sum(hit.rows for hit in hits), counts={"snapshots": found}, snapshots=hits)


def read(snapshots: Snapshots, subject: Subject) -> Iterator[Part]:
    """`snapshots/FOLDER.jsonl` for each snapshot holding the subject's rows: those rows, file by file."""
    if snapshots.config.format == "delta":
        yield Part("", note=DELTA_NOTE)
        return
    sought = Sought(snapshots.config.keys, [subject])
    if sought.nobody:
        return
    by_folder: dict[str, list[str]] = {}
    for rel, counts in sorted(snapshots._counts(sought, []).items()):
        if counts[0]:
            by_folder.setdefault(rel.split("/", 1)[0], []).append(rel)
    for folder, files in by_folder.items():
        yield Part(f"snapshots/{folder}.jsonl", records=_rows(snapshots, files, sought))


def _rows(snapshots: Snapshots, files: list[str], sought: Sought) -> Iterator[dict[str, Any]]:
    """The subject's rows of each file, in the file's order."""
    for rel in files:
        with snapshots._errors(rel), snapshots._unless_missing(rel, []), snapshots.location.reading(rel) as path:
            fmt = format_of(snapshots.config.format, rel)
            if isinstance(fmt, ParquetFormat):
                yield from _parquet_rows(path, sought)
            elif isinstance(fmt, JsonLinesFormat):
                with fmt._reading(path) as stream:
                    yield from (json.loads(raw) for raw, whose in fmt.records(stream, sought) if whose)
            elif isinstance(fmt, CsvFormat):
                yield from _csv_rows(fmt, path, sought)


def _parquet_rows(path: str, sought: Sought) -> Iterator[dict[str, Any]]:
    """The matching rows of the row groups that may hold them, every column."""
    with pq.ParquetFile(path) as parquet:
        match = ArrowMatch(sought, parquet.schema_arrow)
        for index in ParquetFormat._candidates(parquet, match):
            group = parquet.read_row_group(index, use_threads=False)
            mask, _ = match.attribute(group)
            if mask is not None:
                yield from (record(row) for row in group.filter(mask).to_pylist())


def _csv_rows(fmt: CsvFormat, path: str, sought: Sought) -> Iterator[dict[str, Any]]:
    """The matching records as objects keyed by the header's names (the header read as the format reads it)."""
    names: list[str] = []
    delimiter = ","
    with fmt._reading(path) as stream:
        for raw, whose in fmt.records(stream, sought):
            text = raw.decode("utf-8")
            if not names:  # the header comes first, and is nobody's
                bare = QUOTED.sub("", text)
                delimiter = max(DELIMITERS, key=bare.count) if any(d in bare for d in DELIMITERS) else ","
                names = next(csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"'))
                names[0] = names[0].removeprefix("\ufeff")
                continue
            if whose:
                row = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"'))
                yield dict(zip(names, row, strict=True))
