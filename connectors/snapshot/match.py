"""Which rows belong to which subjects: a batch of subjects' values for each `where` column,
looked up by a CSV field's text, a JSON value, or an Arrow column's typed value.

Matching is exact and type-aware; "42" matches:
- an integer or decimal column's 42 and a string column's "42", never 420, "042" or "42 ";
- a float column's or a JSON number's 42.0 only (a float matches a plain integer exactly equal
  to it: 42.5 matches nothing, and no float matches "4.2");
- a JSON 42, 42.0 or "42"; a CSV field whose text is exactly 42;
- in a date, time or timestamp column, only a value written as ISO 8601 (Python's isoformat)
  writes it ("2024-01-01", "2024-01-01T00:00:00"): another spelling of that moment matches nothing.
Booleans, nulls, JSON arrays and objects match nothing; nor does an empty value. Columns of
one `where` are ANDed, several values of one type ORed. A row matching two subjects is theirs
both: it counts for each.

Text is compared after its identifier type's fold (connectors/normalize.py). The request's values
arrive folded; the stored text (a string column, a binary one holding UTF-8, a CSV field, a JSON
string) is folded the same way: by `fold_text` itself, or in Arrow by its ASCII kernels for ASCII
text, where they agree with Python's exactly, and by `fold_text` for the rest (Arrow's Unicode
case mapping is not Python's: "ß", "İ", a final "Σ"; a fold that differed could miss or widen).
Folds touch text only: an integer column or a JSON number is matched by its value. A column of
`match = "exact"` is compared as stored. Parquet statistics prune row groups only by columns
compared as stored or not text: a folded column's min and max say nothing of its folded values."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.arrow_fold import fold_array
from connectors.base import Subject, as_integer
from connectors.normalize import Fold, fold_text
from connectors.snapshot.paths import Malformed, MissingColumn, arrow_path, json_values, plain_type

__all__ = ["NOBODY", "ArrowMatch", "Key", "Malformed", "MissingColumn", "Sought", "typed"]

NOBODY: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Key:
    """One `where` column: its name (or dotted path), its identifier type, and the fold of its
    stored text (None: compared as stored)."""

    column: str
    id_type: str
    fold: Fold | None = ()


class Sought:
    """The values a batch of subjects is sought by: for each `where` column, value -> subjects."""

    def __init__(self, keys: Sequence[Key], subjects: Sequence[Subject]) -> None:
        self.size = len(subjects)
        self.keys = tuple(keys)
        self.columns = tuple(key.column for key in self.keys)
        self.owners: dict[str, dict[str, frozenset[int]]] = {column: {} for column in self.columns}
        self.integers: dict[str, dict[int, frozenset[int]]] = {column: {} for column in self.columns}
        self._typed: dict[tuple[str, pa.DataType], dict[Any, frozenset[int]]] = {}
        for index, subject in enumerate(subjects):
            values = {key.id_type: [v for v in subject.values(key.id_type) if v] for key in self.keys}
            if not all(values.values()):
                continue  # a subject lacking a value for a where type matches nothing
            for key in self.keys:
                for value in values[key.id_type]:
                    _own(self.owners[key.column], value, index)
                    if (number := as_integer(value)) is not None:
                        _own(self.integers[key.column], number, index)

    @property
    def nobody(self) -> bool:
        """Whether no subject can match any row (each lacks a value for some where type)."""
        return not all(self.owners.values())

    def zeros(self) -> list[int]:
        """A count per subject, all 0."""
        return [0] * self.size

    def typed_owners(self, column: str, column_type: pa.DataType) -> dict[Any, frozenset[int]]:
        """Whose each value of a column is, as a column of that type holds it; worked out once per type,
        as a batch's files mostly share one schema."""
        key = (column, column_type)
        if key not in self._typed:
            owners: dict[Any, frozenset[int]] = {}
            for value, whose in self.owners[column].items():
                held = typed(value, column_type)
                if held is not None:
                    owners[held] = owners.get(held, NOBODY) | whose
            self._typed[key] = owners
        return self._typed[key]

    def whose_texts(self, fields: Sequence[str]) -> frozenset[int]:
        """The subjects a record matches, given its where fields' text in column order (CSV)."""
        return _common(
            self.owners[key.column].get(_folded(text, key.fold), NOBODY)
            for key, text in zip(self.keys, fields, strict=True)
        )

    def whose_json(self, record: Mapping[str, Any], seen: list[bool]) -> frozenset[int]:
        """The subjects a JSON object matches (floats parsed as Decimal); marks in `seen` the where
        columns it has, so that a file none of whose records has one is told from a miss."""
        common: frozenset[int] | None = None
        for index, key in enumerate(self.keys):
            values = json_values(record, key.column)
            if values is None:
                common = NOBODY
                continue
            seen[index] = True
            if common is None or common:
                whose = frozenset().union(*(self.whose_value(key, value) for value in values))
                common = whose if common is None else common & whose
        return common or NOBODY

    def whose_value(self, key: Key, value: Any) -> frozenset[int]:
        """The subjects one JSON-like value (str, int, Decimal) of a where column is sought for."""
        if isinstance(value, str):
            return self.owners[key.column].get(_folded(value, key.fold), NOBODY)
        if isinstance(value, bool):
            return NOBODY
        if isinstance(value, int):
            return self.integers[key.column].get(value, NOBODY)
        if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 20 and value == value.to_integral():
            return self.integers[key.column].get(int(value), NOBODY)
        return NOBODY


class ArrowMatch:
    """A Sought typed for one Arrow schema: per where column, where it is, how its values are
    compared, the value set, and whose each value is."""

    def __init__(self, sought: Sought, schema: pa.Schema) -> None:
        self.sought = sought
        self.paths = [arrow_path(schema, key.column) for key in sought.keys]
        self.columns = list(dict.fromkeys(path.top for path in self.paths))  # the top-level columns to read
        self.folds: list[Fold | None] = []
        self.sets: list[pa.Array] = []
        self.owners: list[dict[Any, frozenset[int]]] = []
        self.bounds: dict[str, list[Any]] = {}  # by Parquet column path: values to test min/max with, sorted
        for key, path in zip(sought.keys, self.paths, strict=True):
            kind = _plain(path.leaf)
            fold = key.fold if _textual(kind) else None
            if fold is not None:
                kind = pa.large_string() if _large(kind) else pa.string()
            owners = sought.typed_owners(key.column, kind)
            self.folds.append(fold)
            self.owners.append(owners)
            values = list(owners)
            if pa.types.is_floating(kind) and 0 in owners:
                values.append(-0.0)  # Arrow's is_in tells -0.0 from 0.0 by its bits; a number equal to 0 is both
            self.sets.append(pa.array(values, kind))
            if fold is None and not path.lists and _ordered(kind):
                self.bounds[path.dotted] = sorted(owners)  # one column's values are all int, float or str

    @property
    def nobody(self) -> bool:
        """Whether no row of this schema can match: a where column can hold none of the values."""
        return not all(self.owners)

    def may_hold(self, group: pq.RowGroupMetaData, positions: Mapping[str, int]) -> bool:
        """Whether a row group's min/max statistics leave room for a sought value (missing: maybe)."""
        for column, values in self.bounds.items():
            position = positions.get(column)
            stats = group.column(position).statistics if position is not None else None
            if stats is None or not stats.has_min_max or not values:
                continue
            low, high = stats.min, stats.max
            if _comparable(low, values[0]) and _comparable(high, values[0]):
                first = bisect_left(values, low)  # the least sought value not below the minimum
                if first == len(values) or values[first] > high:
                    return False
        return True

    def attribute(self, data: pa.Table) -> tuple[pa.Array | None, list[int]]:
        """The mask of rows matching any subject (None if none do) and how many match each."""
        counts = self.sought.zeros()
        union, owned = self._owned(data)
        strays = False
        for _, whose in owned:
            for index in whose:
                counts[index] += 1
            strays = strays or not whose
        if union is None or not any(counts):
            return None, counts
        if strays:  # in every column's set, yet nobody's: drop them from the mask
            rows = pa.array([row for row, whose in owned if whose], pa.int64())
            union = pc.is_in(pa.arange(0, data.num_rows), value_set=rows)
        return union, counts

    def owned(self, data: pa.Table) -> list[tuple[int, frozenset[int]]]:
        """Each row matching some subject, with whose it is."""
        return [(row, whose) for row, whose in self._owned(data)[1] if whose]

    def _owned(self, data: pa.Table) -> tuple[pa.Array | None, list[tuple[int, frozenset[int]]]]:
        """The mask of rows in every column's value set, and whose each such row is (maybe nobody's:
        per-column membership is not per-subject, as A's user_id beside B's email is neither's)."""
        if self.nobody or not data.num_rows:
            return None, []
        union = None
        found = []
        for index in range(len(self.paths)):
            values, rows = self._values(data, index)
            elements = pc.is_in(values, value_set=self.sets[index])
            hit = pc.indices_nonzero(elements)
            if not len(hit):
                return None, []
            if rows is None:
                found.append((values, None))
                mask = elements
            else:  # a listed column: the rows of the elements that hit
                found.append((values.take(hit), rows.take(hit)))
                mask = pc.is_in(pa.arange(0, data.num_rows), value_set=found[-1][1])
            union = mask if union is None else pc.and_(union, mask)
        hits = pc.indices_nonzero(union)
        if not len(hits):
            return None, []
        owners = [self._whose(index, hits, *found[index]) for index in range(len(self.paths))]
        return union, [(row, _common(column[i] for column in owners)) for i, row in enumerate(hits.to_pylist())]

    def _values(self, data: pa.Table, index: int) -> tuple[pa.Array, pa.Array | None]:
        """One where column's values as compared (folded if text with a fold), and their rows if listed."""
        values, rows = self.paths[index].values(data)
        fold = self.folds[index]
        if fold is None:
            return values, rows
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            values = _as_text(values)
        return fold_array(values, fold), rows

    def _whose(self, index: int, hits: pa.Array, values: pa.Array, rows: pa.Array | None) -> list[frozenset[int]]:
        """Per hit row, the subjects one where column holds the values of (of any element, if listed)."""
        owners = self.owners[index]
        if rows is None:  # one value per row
            return [owners.get(value, NOBODY) for value in values.take(hits).to_pylist()]
        by_row: dict[int, frozenset[int]] = {}
        for row, value in zip(rows.to_pylist(), values.to_pylist(), strict=True):
            by_row[row] = by_row.get(row, NOBODY) | owners.get(value, NOBODY)
        return [by_row.get(row, NOBODY) for row in hits.to_pylist()]


def typed(value: str, column_type: pa.DataType) -> Any | None:
    """The value as the column's type would hold it (a Python value), or None if it cannot."""
    try:
        if pa.types.is_boolean(column_type):
            return None  # "true" identifies nobody
        if pa.types.is_string(column_type) or pa.types.is_large_string(column_type) or (
            pa.types.is_string_view(column_type)
        ):
            return value
        if pa.types.is_binary(column_type) or pa.types.is_large_binary(column_type):
            return value.encode()
        number = as_integer(value)
        if pa.types.is_integer(column_type):
            return None if number is None else pa.scalar(number, column_type).as_py()
        if pa.types.is_floating(column_type) or pa.types.is_decimal(column_type):
            if number is None:
                return None
            # a decimal column checks its precision (19 digits fit no decimal(20, 2)); a float one may round
            held = pa.scalar(Decimal(number)).cast(column_type, safe=pa.types.is_decimal(column_type)).as_py()
            return held if held == number else None  # exactly: 2**53 + 1 is no float
        # dates, times: by Arrow's strict parse, and only if written as ISO 8601 writes them (Python's isoformat):
        # "2024-01-01T00:00" and "2024-01-01 00:00:00" are that one moment too, which a column cannot tell
        # apart, as it cannot tell "042" from 42
        moment = pa.scalar(value).cast(column_type).as_py()
        return moment if isinstance(moment, date | time) and moment.isoformat() == value else None
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
        return None


def _folded(text: str, fold: Fold | None) -> str:
    return text if fold is None else fold_text(text, fold)


def _plain(kind: pa.DataType) -> pa.DataType:
    """The type values are compared as: a dictionary's values, a view as its plain type."""
    return plain_type(kind.value_type if pa.types.is_dictionary(kind) else kind)


def _textual(kind: pa.DataType) -> bool:
    """Whether a column holds text a fold applies to: strings, and bytes (folded where they are UTF-8)."""
    return any(check(kind) for check in (
        pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary))


def _large(kind: pa.DataType) -> bool:
    return pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)


def _as_text(values: pa.Array) -> pa.Array:
    """Bytes as text; a value that is not UTF-8 becomes null (no request's value is such bytes)."""
    target = pa.large_string() if pa.types.is_large_binary(values.type) else pa.string()
    try:
        return values.cast(target)
    except pa.ArrowInvalid:
        return pa.array([_decoded(value) for value in values.to_pylist()], target)


def _decoded(value: bytes | None) -> str | None:
    try:
        return None if value is None else value.decode()
    except UnicodeDecodeError:
        return None


def _ordered(column_type: pa.DataType) -> bool:
    """Whether Parquet min/max statistics of this type compare like the Python values."""
    return (
        pa.types.is_integer(column_type)
        or pa.types.is_floating(column_type)
        or pa.types.is_string(column_type)
        or pa.types.is_large_string(column_type)
    )


def _comparable(bound: Any, value: Any) -> bool:
    if isinstance(bound, str) and isinstance(value, str):
        return True
    numbers = (int, float)
    return (
        isinstance(bound, numbers)
        and isinstance(value, numbers)
        and not isinstance(bound, bool)
        and bound == bound  # NaN bounds say nothing
    )


def _own(owners: dict[Any, frozenset[int]], key: Any, index: int) -> None:
    owners[key] = owners.get(key, NOBODY) | {index}


def _common(sets: Iterable[frozenset[int]]) -> frozenset[int]:
    """The subjects in every set (ANDed columns)."""
    common: frozenset[int] | None = None
    for whose in sets:
        common = whose if common is None else common & whose
        if not common:
            return NOBODY
    return common or NOBODY
