"""Which rows belong to which subjects: a batch of subjects' values for each `where` column,
looked up by a CSV field's text, a JSON value, or an Arrow column's typed value.

Matching is exact and type-aware; "42" matches:
- an integer or decimal column's 42 and a string column's "42", never 420, "042" or "42 ";
- a float column's or a JSON number's 42.0 only (a float matches a plain integer exactly equal
  to it: 42.5 matches nothing, and no float matches "4.2");
- a JSON 42, 42.0 or "42"; a CSV field whose text is exactly 42.
Booleans, nulls, JSON arrays and objects match nothing; nor does an empty value. Columns of
one `where` are ANDed, several values of one type ORed. A row matching two subjects is theirs
both: it counts for each."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.base import Subject, as_integer

NOBODY: frozenset[int] = frozenset()


class Malformed(Exception):
    """A file this format cannot be read as; the message names the place, never a value."""


class Sought:
    """The values a batch of subjects is sought by: for each `where` column, value -> subjects."""

    def __init__(self, where: Sequence[tuple[str, str]], subjects: Sequence[Subject]) -> None:
        self.size = len(subjects)
        self.columns = tuple(column for column, _ in where)
        self.owners: dict[str, dict[str, frozenset[int]]] = {column: {} for column in self.columns}
        self.integers: dict[str, dict[int, frozenset[int]]] = {column: {} for column in self.columns}
        self._typed: dict[tuple[str, pa.DataType], dict[Any, frozenset[int]]] = {}
        for index, subject in enumerate(subjects):
            values = {id_type: [v for v in subject.values(id_type) if v] for _, id_type in where}
            if not all(values.values()):
                continue  # a subject lacking a value for a where type matches nothing
            for column, id_type in where:
                for value in values[id_type]:
                    _own(self.owners[column], value, index)
                    if (number := as_integer(value)) is not None:
                        _own(self.integers[column], number, index)

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
        return _common(self.owners[c].get(text, NOBODY) for c, text in zip(self.columns, fields, strict=True))

    def whose_json(self, record: Mapping[str, Any]) -> frozenset[int]:
        """The subjects a JSON object matches by its top-level fields (floats parsed as Decimal)."""
        return _common(self._whose_json_value(column, record.get(column)) for column in self.columns)

    def _whose_json_value(self, column: str, value: Any) -> frozenset[int]:
        if isinstance(value, str):
            return self.owners[column].get(value, NOBODY)
        if isinstance(value, bool):
            return NOBODY
        if isinstance(value, int):
            return self.integers[column].get(value, NOBODY)
        if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 20 and value == value.to_integral():
            return self.integers[column].get(int(value), NOBODY)
        return NOBODY


class ArrowMatch:
    """A Sought typed for one Arrow schema: a value set per column, and whose each typed value is."""

    def __init__(self, sought: Sought, schema: pa.Schema) -> None:
        self.sought = sought
        self.sets: dict[str, pa.Array] = {}
        self.owners: dict[str, dict[Any, frozenset[int]]] = {}
        self.bounds: dict[str, list[Any]] = {}  # the values to test min/max statistics with, sorted
        for column in sought.columns:
            found = len(schema.get_all_field_indices(column))
            if found != 1:
                raise Malformed(f"no column {column!r}" if not found else f"column {column!r} appears twice")
            column_type = schema.field(column).type
            if pa.types.is_dictionary(column_type):
                column_type = column_type.value_type
            owners = sought.typed_owners(column, column_type)
            self.owners[column] = owners
            self.sets[column] = pa.array(list(owners), column_type)
            if _ordered(column_type):
                self.bounds[column] = sorted(owners)  # one column's values are all int, float or str

    @property
    def nobody(self) -> bool:
        """Whether no row of this schema can match: a where column can hold none of the values."""
        return not all(self.owners.values())

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

    def attribute(self, data: pa.Table) -> tuple[pa.ChunkedArray | pa.Array | None, list[int]]:
        """The mask of rows matching any subject (None if none do) and how many match each."""
        counts = self.sought.zeros()
        if self.nobody or not data.num_rows:
            return None, counts
        masks = [pc.is_in(data.column(column), value_set=values) for column, values in self.sets.items()]
        union = masks[0]
        for mask in masks[1:]:
            union = pc.and_(union, mask)
        hits = pc.indices_nonzero(union)
        if not len(hits):
            return None, counts
        # per-column membership is not per-subject: with two where columns, subject A's user_id
        # beside subject B's email is in every column's set yet is neither's row
        columns = [data.column(column).take(hits).to_pylist() for column in self.sets]
        strays = []
        for position, row in zip(hits.to_pylist(), zip(*columns, strict=True), strict=True):
            whose = _common(self.owners[c].get(v, NOBODY) for c, v in zip(self.sets, row, strict=True))
            for index in whose:
                counts[index] += 1
            if not whose:
                strays.append(position)
        if strays:
            positions = pa.array(range(data.num_rows), pa.int64())
            union = pc.and_(union, pc.invert(pc.is_in(positions, value_set=pa.array(strays, pa.int64()))))
        return (union if any(counts) else None), counts


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
            held = pa.scalar(Decimal(number)).cast(column_type, safe=False).as_py()
            return held if held == number else None  # exactly: 2**53 + 1 is no float
        return pa.scalar(value).cast(column_type).as_py()  # dates, times: by Arrow's strict parse
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
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
