"""One snapshot folder read for its values rather than sought by them: the `where` columns' stored
values of each file, as the connector compares them, for a caller that knows the subjects it looks
for only by keyed hashes (`erasure guard check`), and erasures that rewrite that folder's files only.

A value "as compared" is the text the snapshot connector compares with a request's value: stored
text folded as its column is (match.py), an integer, or a float, decimal or JSON number equal to
one, as its canonical decimal text (42, never 42.0 or 042); a value no request's value can match (a
boolean, a null, a fraction, an object) is null. Files are read with the readers the connector
uses (formats.py for JSON lines and CSV, paths.py for Parquet and nested fields), so a file they
refuse is refused here too, and one lacking a `where` column fails or is skipped alike."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.arrow_fold import fold_array
from connectors.base import as_integer
from connectors.errors import PermanentError
from connectors.normalize import Fold, fold_text
from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.connector import SnapshotConnector
from connectors.snapshot.formats import RecordFormat, format_of
from connectors.snapshot.match import NOBODY, Key, Sought
from connectors.snapshot.paths import arrow_path, json_values, plain_type

BATCH_ROWS = 1 << 16  # records of a JSON lines or CSV file gathered into one batch


@dataclass(frozen=True)
class WhereColumn:
    """One `where` column's values in a batch of rows, as compared, dictionary-encoded, with the row
    of each value; `rows` is None when there is one value per row (a Parquet path crossing no list)."""

    key: Key
    texts: pa.DictionaryArray
    rows: pa.Array | None


@dataclass(frozen=True)
class WhereBatch:
    """A batch of a file's rows: how many, and each `where` column's values in them."""

    rows: int
    columns: tuple[WhereColumn, ...]


class SnapshotFolder(SnapshotConnector):
    """A snapshot system's connector that sees one snapshot folder only: its files, their `where`
    values, and erasures that rewrite no file outside it. Files lacking a where column that
    `on_missing_column = "skip"` leaves are listed in `skipped`."""

    def __init__(self, config: SnapshotConfig, folder: str) -> None:
        if config.format == "delta":
            raise PermanentError(f"snapshot {config.name}: a Delta table has versions, not snapshot folders")
        super().__init__(config)
        self.folder = folder
        self.skipped: list[dict[str, Any]] = []

    def files(self) -> list[str]:
        """The folder's data files (`FOLDER/.../FILE`), sorted."""
        self._check_location()
        return self._files()

    def _files(self) -> list[str]:
        return [rel for rel in super()._files() if rel.startswith(f"{self.folder}/")]

    def where_values(self, rel: str) -> Iterator[WhereBatch]:
        """The file's `where` values, batch by batch; errors translated as the connector's, naming the file."""
        with self._errors(rel), self._unless_missing(rel, self.skipped), self.location.reading(rel) as path:
            yield from read_where(self.config.format, rel, path, self.config.keys)


def read_where(fmt: str, rel: str, path: str, keys: Sequence[Key]) -> Iterator[WhereBatch]:
    """The `where` values of the local file at `path` (of a system of format `fmt`), batch by batch."""
    reading = format_of(fmt, rel)
    if isinstance(reading, RecordFormat):
        yield from _records(reading, path, keys)
        return
    with pq.ParquetFile(path) as parquet:
        paths = [arrow_path(parquet.schema_arrow, key.column) for key in keys]
        tops = list(dict.fromkeys(found.top for found in paths))
        for index in range(parquet.metadata.num_row_groups):
            group = parquet.read_row_group(index, columns=tops, use_threads=False)
            columns = []
            for key, found in zip(keys, paths, strict=True):
                values, rows = found.values(group)
                columns.append(WhereColumn(key, compared(values, key.fold), rows))
            yield WhereBatch(group.num_rows, tuple(columns))


def compared(values: pa.Array, fold: Fold | None) -> pa.DictionaryArray:
    """An Arrow column's values as compared, dictionary-encoded: each distinct value converted once."""
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    distinct = encoded.dictionary
    kind = plain_type(distinct.type)
    if kind != distinct.type:
        distinct = distinct.cast(kind)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        distinct = pa.array([_utf8(raw) for raw in distinct.to_pylist()],
                            pa.large_string() if pa.types.is_large_binary(kind) else pa.string())
        kind = distinct.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        texts = distinct if fold is None else fold_array(distinct, fold)
    elif pa.types.is_integer(kind):
        texts = distinct.cast(pa.string())  # canonical decimal text, as as_integer reads it
    elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        texts = pa.array([_whole(number) for number in distinct.to_pylist()], pa.string())
    else:
        texts = pa.nulls(len(distinct), pa.string())  # booleans, dates, lists: no request's value
    return pa.DictionaryArray.from_arrays(encoded.indices, texts)


def compared_json(value: Any, fold: Fold | None) -> str | None:
    """A JSON value (floats parsed as Decimal) as compared, or None if no request's value can match it."""
    if isinstance(value, str):
        return (value if fold is None else fold_text(value, fold)) or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _canonical(value)
    if isinstance(value, Decimal):
        return _whole(value)
    return None


class Collector(Sought):
    """A Sought for nobody that keeps every value it is shown: the record formats' readers (and the
    vector kind's Qdrant payloads) hand it each record's where fields, and it gathers them, as
    compared, into batches."""

    def __init__(self, keys: Sequence[Key]) -> None:
        super().__init__(keys, [])
        self.rows = 0
        self._texts: list[list[str | None]] = [[] for _ in self.keys]
        self._rows: list[list[int]] = [[] for _ in self.keys]

    def whose_texts(self, fields: Sequence[str]) -> frozenset[int]:
        """Keep one CSV record's where fields (in column order); it is nobody's."""
        for index, (key, text) in enumerate(zip(self.keys, fields, strict=True)):
            self._texts[index].append((text if key.fold is None else fold_text(text, key.fold)) or None)
            self._rows[index].append(self.rows)
        self.rows += 1
        return NOBODY

    def whose_json(self, record: Mapping[str, Any], seen: list[bool]) -> frozenset[int]:
        """Keep every value one JSON object's where names reach, marking the names it has in `seen`."""
        for index, key in enumerate(self.keys):
            values = json_values(record, key.column)
            if values is None:
                continue
            seen[index] = True
            self._texts[index] += [compared_json(value, key.fold) for value in values]
            self._rows[index] += [self.rows] * len(values)
        self.rows += 1
        return NOBODY

    def batch(self) -> WhereBatch:
        """The records kept so far, as a batch; the collector starts again empty."""
        columns = tuple(WhereColumn(key, pc.dictionary_encode(pa.array(texts, pa.string())), pa.array(rows, pa.int64()))
                        for key, texts, rows in zip(self.keys, self._texts, self._rows, strict=True))
        found = WhereBatch(self.rows, columns)
        self.rows = 0
        self._texts = [[] for _ in self.keys]
        self._rows = [[] for _ in self.keys]
        return found


def _records(reading: RecordFormat, path: str, keys: Sequence[Key]) -> Iterator[WhereBatch]:
    collector = Collector(keys)
    with reading._reading(path) as stream:
        for _ in reading.records(stream, collector):
            if collector.rows >= BATCH_ROWS:
                yield collector.batch()
    if collector.rows:
        yield collector.batch()


def _canonical(number: int | None) -> str | None:
    """An integer's decimal text, if a request's value can be that integer (as_integer's rule)."""
    if number is None:
        return None
    text = str(number)
    return text if as_integer(text) is not None else None


def _whole(number: float | Decimal | None) -> str | None:
    """A float or decimal exactly equal to an integer, as that integer's text; None for any other."""
    if number is None:
        return None
    try:
        whole = int(number)
    except (ValueError, OverflowError, ArithmeticError):  # NaN, infinities
        return None
    return _canonical(whole) if whole == number else None


def _utf8(raw: bytes | None) -> str | None:
    try:
        return None if raw is None else raw.decode()
    except UnicodeDecodeError:
        return None  # no request's value is such bytes
