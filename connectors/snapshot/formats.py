"""The file formats a snapshot may hold, one class each with the same methods: `count` reads a
local file and says how many rows each sought subject has in it; `holds` whether it has any,
reading no further than the first; `rewrite` writes it again to a sink without any of those
rows and says how many of each it left out.

Parquet streams row group by row group (at most one in memory), skipping the groups whose
statistics exclude every value sought, finds with the where columns alone, and keeps the
schema, key-value metadata, codecs and row-group sizes. JSON lines and CSV keep every other
record byte for byte: a kept line is copied, never re-serialized; CSV records are parsed with
the csv module over the text while the raw lines each record spans are kept, so quoted fields
holding newlines stay whole. A file ending in .gz is read and rewritten gzip-compressed.

A file lacking a `where` column raises MissingColumn, whatever its rows: a Parquet schema or a
CSV header without it, or a JSON lines file none of whose records has it (an empty one is
fine). Statistics skip row groups only by columns compared as stored (see snapshot_match)."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import BinaryIO

import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.snapshot.match import NOBODY, ArrowMatch, Malformed, MissingColumn, Sought

DELIMITERS = (",", "\t", ";", "|")  # the first most frequent in the header line wins
QUOTED = re.compile(r'"[^"]*"')
ARROW_SCHEMA = b"ARROW:schema"
DECODER = json.JSONDecoder(parse_float=Decimal)  # exact: 9007199254740993.0 is no 2**53
WRITABLE_CODECS = {"UNCOMPRESSED": "none", "LZ4_RAW": "lz4", "LZ4": "lz4"}


class SnapshotFormat(ABC):
    """How one kind of data file is counted and rewritten."""

    label = ""

    @abstractmethod
    def count(self, path: str, sought: Sought) -> list[int]:
        """Rows of each subject in the file at path."""

    @abstractmethod
    def holds(self, path: str, sought: Sought) -> bool:
        """Whether the file at path has any subject's row; reads up to the first it finds."""

    @abstractmethod
    def rewrite(self, path: str, sought: Sought, sink: BinaryIO) -> list[int]:
        """Write the file at path to sink without any subject's rows; rows left out per subject."""


class ParquetFormat(SnapshotFormat):
    """Parquet: read only the where columns to count; rewrite group by group."""

    label = "Parquet"

    def count(self, path: str, sought: Sought) -> list[int]:
        """Rows of each subject, reading only the where columns of row groups that may hold them."""
        counts = sought.zeros()
        with pq.ParquetFile(path) as parquet:
            for found in self._found(parquet, sought):
                counts = [a + b for a, b in zip(counts, found, strict=True)]
        return counts

    def holds(self, path: str, sought: Sought) -> bool:
        """Whether a row group that may hold a subject's row does, up to the first that does."""
        with pq.ParquetFile(path) as parquet:
            return any(any(found) for found in self._found(parquet, sought))

    def _found(self, parquet: pq.ParquetFile, sought: Sought) -> Iterator[list[int]]:
        """Rows of each subject in each row group that may hold them, reading only the where columns."""
        match = ArrowMatch(sought, parquet.schema_arrow)
        for index in self._candidates(parquet, match):
            group = parquet.read_row_group(index, columns=match.columns, use_threads=False)
            yield match.attribute(group)[1]

    def rewrite(self, path: str, sought: Sought, sink: BinaryIO) -> list[int]:
        """Copy the file group by group, each group minus the matching rows, at its old size."""
        removed = sought.zeros()
        with pq.ParquetFile(path) as parquet:
            match = ArrowMatch(sought, parquet.schema_arrow)
            meta = parquet.metadata
            candidates = set(self._candidates(parquet, match))
            with pq.ParquetWriter(sink, parquet.schema_arrow, **_writer_options(meta)) as writer:
                for index in range(meta.num_row_groups):
                    group = parquet.read_row_group(index, use_threads=False)
                    if index in candidates:
                        mask, counts = match.attribute(group)
                        if mask is not None:
                            group = group.filter(pc.invert(mask))
                            removed = [a + b for a, b in zip(removed, counts, strict=True)]
                    if group.num_rows:
                        writer.write_table(group, row_group_size=meta.row_group(index).num_rows)
                    del group  # let go before the next is read: one group in memory, not two
                # files not written by Arrow (Spark's) keep their key-value metadata too
                writer.add_key_value_metadata({k: v for k, v in (meta.metadata or {}).items() if k != ARROW_SCHEMA})
        return removed

    @staticmethod
    def _candidates(parquet: pq.ParquetFile, match: ArrowMatch) -> list[int]:
        """The row groups whose statistics leave room for a sought value."""
        if match.nobody:
            return []
        meta = parquet.metadata
        positions = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
        return [i for i in range(meta.num_row_groups) if match.may_hold(meta.row_group(i), positions)]


def _writer_options(meta: pq.FileMetaData) -> dict[str, object]:
    """The writer settings that reproduce a file: codec per column, format version, stored schema."""
    codecs: dict[str, str] | str = "snappy"
    if meta.num_row_groups:
        chunks = [meta.row_group(0).column(j) for j in range(meta.num_columns)]
        codecs = {c.path_in_schema: WRITABLE_CODECS.get(c.compression, c.compression.lower()) for c in chunks}
    return {
        "compression": codecs,
        "version": meta.format_version if meta.format_version in ("1.0", "2.4", "2.6") else "2.6",
        "store_schema": ARROW_SCHEMA in (meta.metadata or {}),
    }


class RecordFormat(SnapshotFormat):
    """A text format of records, one after another: kept records are copied byte for byte."""

    def __init__(self, gzipped: bool) -> None:
        self.gzipped = gzipped

    @abstractmethod
    def records(self, stream: BinaryIO, sought: Sought) -> Iterator[tuple[bytes, frozenset[int]]]:
        """Each record's original bytes and the subjects it matches, header included (nobody's)."""

    def count(self, path: str, sought: Sought) -> list[int]:
        """Rows of each subject, reading every record."""
        counts = sought.zeros()
        with self._reading(path) as stream:
            for _, whose in self.records(stream, sought):
                for subject in whose:
                    counts[subject] += 1
        return counts

    def holds(self, path: str, sought: Sought) -> bool:
        """Whether any record is a subject's, reading up to the first that is."""
        with self._reading(path) as stream:
            return any(whose for _, whose in self.records(stream, sought))

    def rewrite(self, path: str, sought: Sought, sink: BinaryIO) -> list[int]:
        """Copy every record that matches nobody; compress again if the file was gzipped."""
        removed = sought.zeros()
        pending: list[bytes] = []  # written in chunks: gzip compresses each write on its own
        with self._reading(path) as stream, self._writing(sink) as out:
            for raw, whose in self.records(stream, sought):
                if not whose:
                    pending.append(raw)
                    if len(pending) >= 1024:
                        out.write(b"".join(pending))
                        pending.clear()
                for subject in whose:
                    removed[subject] += 1
            out.write(b"".join(pending))
        return removed

    @contextmanager
    def _reading(self, path: str) -> Iterator[BinaryIO]:
        with gzip.open(path, "rb") if self.gzipped else open(path, "rb", buffering=1 << 16) as stream:
            yield stream  # type: ignore[misc]

    @contextmanager
    def _writing(self, sink: BinaryIO) -> Iterator[BinaryIO]:
        if not self.gzipped:
            yield sink
            return
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=6, mtime=0) as packed:
            yield packed  # type: ignore[misc]


class JsonLinesFormat(RecordFormat):
    """JSON lines: one object per line; a where column names a top-level field or a dotted path."""

    label = "JSON lines"

    def records(self, stream: BinaryIO, sought: Sought) -> Iterator[tuple[bytes, frozenset[int]]]:
        """Each line and whose it is; blank lines are kept and are nobody's. Once the last is read,
        MissingColumn if there were records and none had some where column."""
        seen = [False] * len(sought.keys)
        records = 0
        for number, line in enumerate(stream, 1):
            if not line.strip():
                yield line, NOBODY
                continue
            try:
                text = line.decode("utf-8")
                record = DECODER.decode(text.removeprefix("\ufeff") if number == 1 else text)
            except ValueError:  # bad JSON or bad UTF-8; the message would quote the line
                raise Malformed(f"line {number} is not valid JSON") from None
            if not isinstance(record, dict):
                raise Malformed(f"line {number} is not a JSON object")
            records += 1
            yield line, sought.whose_json(record, seen)
        if records and not all(seen):
            column = sought.columns[seen.index(False)]
            raise MissingColumn(column, f"no record has the key {column!r}")


class CsvFormat(RecordFormat):
    """CSV with a header line, UTF-8; delimiter read off the header, `"` quotes."""

    label = "CSV"

    def records(self, stream: BinaryIO, sought: Sought) -> Iterator[tuple[bytes, frozenset[int]]]:
        """The header and each record with the raw lines it spans, and whose it is."""
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")  # newline="": keep \r\n as is
        spanned: list[str] = []

        def lines() -> Iterator[str]:
            for line in itertools.chain([first], text):
                spanned.append(line)
                yield line

        try:
            first = text.readline()
            if not first:
                return
            names = QUOTED.sub("", first)  # a delimiter inside a quoted column name does not count
            delimiter = max(DELIMITERS, key=names.count) if any(d in names for d in DELIMITERS) else ","
            reader = csv.reader(lines(), delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
            header = next(reader)
            if header:
                header[0] = header[0].removeprefix("\ufeff")  # a byte-order mark is no part of the name
            positions = [_position(header, column) for column in sought.columns]
            yield _take(spanned), NOBODY
            for row in reader:
                if row and len(row) != len(header):
                    raise Malformed(f"line {reader.line_num} has {len(row)} fields, the header {len(header)}")
                yield _take(spanned), sought.whose_texts([row[p] for p in positions]) if row else NOBODY
        except UnicodeDecodeError:
            raise Malformed("not UTF-8 text") from None
        except csv.Error:
            raise Malformed(f"line {reader.line_num} is not well-formed CSV") from None
        finally:
            text.detach()  # the stream is the caller's to close


def _position(header: list[str], column: str) -> int:
    if column not in header:
        raise MissingColumn(column)
    if header.count(column) != 1:
        raise Malformed(f"column {column!r} appears twice")
    return header.index(column)


def _take(spanned: list[str]) -> bytes:
    raw = "".join(spanned).encode()
    spanned.clear()
    return raw


SUFFIXES = {"parquet": (".parquet",), "jsonl": (".jsonl", ".jsonl.gz"), "csv": (".csv", ".csv.gz")}


def suffixes(fmt: str) -> tuple[str, ...]:
    """The file endings a system of this `format` takes (`jsonl` and `jsonl.gz` take both)."""
    return SUFFIXES[fmt.removesuffix(".gz")]


def format_of(fmt: str, rel: str) -> SnapshotFormat:
    """How to read one file of a system of this `format`: by the format, gzipped if it ends .gz."""
    family = fmt.removesuffix(".gz")
    if family == "parquet":
        return ParquetFormat()
    gzipped = rel.endswith(".gz")
    return JsonLinesFormat(gzipped) if family == "jsonl" else CsvFormat(gzipped)
