"""The snapshot kind's read-only probe (`erasure check`): the location is there and lists, and every
data file has every `where` column, read as erasing reads it but no further than it must: a Parquet
file's footer, a CSV file's header line, the first RECORDS records of a JSON lines file (on S3, a
ranged read of the footer or of the first HEAD_BYTES); a Delta table's schema, features and
partitions as the Delta engine checks them. A file lacking a column fails the check as it would
fail an erasure, or is a note with `on_missing_column = "skip"`. Nothing is written or locked."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.base import Checked, Patterns
from connectors.checks import Found, misfit, misfit_note
from connectors.errors import ConnectorError
from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.formats import DECODER, CsvFormat
from connectors.snapshot.locations.base import Location
from connectors.snapshot.locations.local import LocalFolder
from connectors.snapshot.match import Malformed, MissingColumn, Sought, typed
from connectors.snapshot.paths import arrow_path, json_values

RECORDS = 100  # JSON lines records read per file
SHOWN = 3  # files named per missing column


class Snapshot(Protocol):
    """The snapshot connector as read here (connector.py imports this module, never the reverse)."""

    config: SnapshotConfig

    @property
    def location(self) -> Location:
        """Where the system's files live."""

    def _files(self) -> list[str]: ...

    def _engine(self) -> Any: ...

    def _errors(self, rel: str) -> AbstractContextManager[None]: ...


def check(connector: Snapshot, patterns: Patterns | None) -> Checked:
    """The location and every data file's schema, as the config needs them, read-only."""
    config, found = connector.config, Found()
    if config.format == "delta":
        _delta(connector, patterns or {}, found)
        return found.checked()
    with connector._errors("location"):
        there = connector.location.exists()
    if not there:
        return Checked((f"location {config.location!r} is not there",))
    files = connector._files()
    missing: dict[str, list[str]] = {}
    unsure: dict[str, list[str]] = {}
    for rel in files:
        try:
            with connector._errors(rel), _head(connector.location, rel, config.format) as (path, whole):
                lacking = _columns(config, rel, path, whole, patterns or {}, found)
        except ConnectorError as exc:
            found.problems.append(str(exc).removeprefix(f"snapshot {config.name}: "))
            continue
        for column, sure in lacking.items():
            (missing if sure else unsure).setdefault(column, []).append(rel)
    skip = config.on_missing_column == "skip"
    for column, rels in missing.items():
        text = f"{_some(rels)} of {len(files)} have no column {column!r} (where)"
        if skip:
            found.notes.append(text + ': left untouched (on_missing_column = "skip")')
        else:
            found.problems.append(text)
    for column, rels in unsure.items():
        found.notes.append(f"{_some(rels)}: none of the first {RECORDS} records has {column!r}; an erasure "
                           + ("leaves such a file" if skip else "fails") + " if no record of it has the column")
    found.notes.append(f"{len(files)} data file(s) looked at" if files else
                       f"no {config.format} file under the location yet: no schema to check")
    return found.checked()


def _some(rels: list[str]) -> str:
    """How many files, and the first few by name."""
    shown = ", ".join(rels[:SHOWN]) + (f" and {len(rels) - SHOWN} more" if len(rels) > SHOWN else "")
    return f"{len(rels)} file(s) ({shown})"


def _columns(config: SnapshotConfig, rel: str, path: str, whole: bool, patterns: Patterns,
             found: Found) -> dict[str, bool]:
    """The where columns the file lacks, each True when it surely does (False: not in the records read)."""
    family = config.format.removesuffix(".gz")
    if family == "parquet":
        schema, lacking = pq.read_schema(path), {}
        for column, id_type in config.where:
            try:
                leaf = arrow_path(schema, column).leaf
            except MissingColumn:
                lacking[column] = True
                continue
            _misfit(f"column {column!r}", leaf, id_type, patterns, found)
        return lacking
    with _opened(path, rel.endswith(".gz")) as stream:
        if family == "csv":
            try:
                next(CsvFormat(False).records(stream, Sought(config.keys, [])), None)
            except MissingColumn as exc:
                return {exc.column: True}
            return {}
        return _json_lines(config, stream, whole)


def _json_lines(config: SnapshotConfig, stream: BinaryIO, whole: bool) -> dict[str, bool]:
    """The where keys none of the first RECORDS records has: sure when the file ended before."""
    seen, records, ended = dict.fromkeys((column for column, _ in config.where), False), 0, True
    try:
        for number, line in enumerate(stream, 1):
            if records == RECORDS:
                ended = False
                break
            if not line.strip():
                continue
            if not line.endswith(b"\n") and not whole:
                break  # cut by the ranged read
            try:
                text = line.decode("utf-8")
                record = DECODER.decode(text.removeprefix("\ufeff") if number == 1 else text)
            except ValueError:
                raise Malformed(f"line {number} is not valid JSON") from None
            if not isinstance(record, dict):
                raise Malformed(f"line {number} is not a JSON object")
            records += 1
            for column in seen:
                seen[column] = seen[column] or json_values(record, column) is not None
    except EOFError:
        if whole:
            raise
    ended = ended and whole
    return {column: ended for column, there in seen.items() if not there and records}


def _misfit(place: str, kind: pa.DataType, id_type: str, patterns: Patterns,
            found: Found) -> None:
    """A note when the column's type cannot hold some values the identifier type's pattern takes."""
    example = misfit(patterns.get(id_type), lambda value: typed(value, kind) is not None)
    if example is not None:
        found.notes.append(misfit_note(place, str(kind), id_type, example))


def _delta(connector: Snapshot, patterns: Patterns, found: Found) -> None:
    """A Delta table: as its engine checks it before erasing (features, partitions, column types)."""
    engine = connector._engine()
    lacking = engine._skipped()  # a PermanentError when the table fails to open or lacks a column
    if lacking is not None:
        found.notes.append(f'the table has no column {lacking!r} (where): left untouched (on_missing_column = '
                           '"skip")')
        return
    for path, (_, id_type) in zip(engine._paths(engine._open()), connector.config.where, strict=True):
        _misfit(f"column {path.name!r}", path.leaf, id_type, patterns, found)


@contextmanager
def _opened(path: str, gzipped: bool) -> Iterator[BinaryIO]:
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as stream:
        yield stream  # type: ignore[misc]


def _head(location: Location, rel: str, fmt: str) -> AbstractContextManager[tuple[str, bool]]:
    """A local path holding what the probe reads of the file, and whether it is the whole file."""
    if not isinstance(location, LocalFolder):
        from connectors.snapshot.probe_s3 import ranged  # boto3, loaded only for an s3:// location

        return ranged(location, rel, fmt)
    return _whole(location, rel)


@contextmanager
def _whole(location: Location, rel: str) -> Iterator[tuple[str, bool]]:
    with location.reading(rel) as path:
        yield path, True
