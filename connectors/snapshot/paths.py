"""Where a `where` column's values sit in a record: a top-level column, or a dotted path into
struct fields (`metadata.user_id`; JSON: objects) that crosses lists element-wise
(`participants.user_id` over a list of structs; JSON: an array of objects), so that a row is a
subject's when any element matches. A leaf that is itself a list matches nothing.

A dotted name is plain names joined by dots (checked at config). It names the top-level column
of that very name when the schema (a JSON object) has one, and the nested field otherwise; a
name that reaches both is refused as ambiguous, as matching the one nobody meant could miss the
other's rows. CSV has no nesting: there a `where` name is a header name, dots and all.

A file lacking a `where` column raises MissingColumn (a Parquet schema without it, a CSV header
without it, a JSON lines file none of whose records reaches it), never a silent miss."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
Step = tuple[str, int] | None  # a struct field (name, index), or None: into each element of a list


class Malformed(Exception):
    """A file this format cannot be read as; the message names the place, never a value."""


class MissingColumn(Malformed):
    """A file lacking a `where` column: it cannot say whose its rows are."""

    def __init__(self, column: str, problem: str | None = None) -> None:
        super().__init__(problem or f"no column {column!r}")
        self.column = column


@lru_cache(maxsize=1024)
def is_path(name: str) -> bool:
    """Whether a `where` name is a dotted path into nested fields (if no top-level column has it)."""
    return DOTTED.fullmatch(name) is not None


@dataclass(frozen=True)
class ArrowPath:
    """A `where` name found in an Arrow schema: the top-level column holding it, the steps from
    there to its values, and their type."""

    name: str
    top: str
    steps: tuple[Step, ...]
    leaf: pa.DataType

    @property
    def lists(self) -> bool:
        """Whether the path crosses a list: a row then holds any number of values."""
        return None in self.steps

    @property
    def dotted(self) -> str:
        """The path as Parquet names its leaf column, when it crosses no list (statistics are by it)."""
        return ".".join([self.top, *(step[0] for step in self.steps if step is not None)])

    def column(self, data: pa.Table) -> pa.Array:
        """The top-level column, in one chunk, views as plain strings and bytes (take() lacks views)."""
        column = data.column(self.top)
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        plain = plain_type(array.type)
        return array if plain == array.type else array.cast(plain)

    def values(self, data: pa.Table) -> tuple[pa.Array, pa.Array | None]:
        """The values of every row (each list's elements in turn) and, if a list was crossed, the
        row each value came from."""
        array = self.column(data)
        rows: pa.Array | None = None
        for step in self.steps:
            if step is not None:
                array = pc.struct_field(array, [step[1]])  # null where the struct is null
                continue
            if not pa.types.is_fixed_size_list(array.type):
                # a null list may hide elements, which list_parent_indices would count and list_flatten not
                array = pc.fill_null(array, pa.scalar([], array.type))
            parents = pc.list_parent_indices(array).cast(pa.int64())
            array = pc.list_flatten(array)
            rows = parents if rows is None else rows.take(parents)
        return array, rows


def arrow_path(schema: pa.Schema, name: str) -> ArrowPath:
    """The `where` name in a schema: a top-level column, else a nested field; MissingColumn if neither."""
    literal = _top(schema, name)
    nested = _nested(schema, name) if is_path(name) else None
    if literal is not None and nested is not None:
        raise Malformed(f"{name!r} names both a top-level column and a nested field")
    if literal is None and nested is None:
        raise MissingColumn(name)
    return literal or nested  # type: ignore[return-value]


def _top(schema: pa.Schema, name: str) -> ArrowPath | None:
    found = schema.get_all_field_indices(name)
    if len(found) > 1:
        raise Malformed(f"column {name!r} appears twice")
    return ArrowPath(name, name, (), schema.field(found[0]).type) if found else None


def _nested(schema: pa.Schema, name: str) -> ArrowPath | None:
    first, *rest = name.split(".")
    top = _top(schema, first)
    if top is None:
        return None
    kind, steps = top.leaf, list[Step]()
    for segment in rest:
        while _listed(kind):
            steps.append(None)
            kind = kind.value_type
        if not pa.types.is_struct(kind):
            return None
        found = kind.get_all_field_indices(segment)
        if len(found) > 1:
            raise Malformed(f"{name!r}: field {segment!r} appears twice")
        if not found:
            return None
        steps.append((segment, found[0]))
        kind = kind.field(found[0]).type
    return ArrowPath(name, first, tuple(steps), kind)


def plain_type(kind: pa.DataType) -> pa.DataType:
    """The type with every string or binary view in it (deltalake writes them) as its plain type."""
    if pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(plain_type(kind.field(i).type)) for i in range(kind.num_fields)])
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        field = kind.value_field.with_type(plain_type(kind.value_type))
        return pa.list_(field) if pa.types.is_list(kind) else pa.large_list(field)
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(kind.value_field.with_type(plain_type(kind.value_type)), kind.list_size)
    return kind


def _listed(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def leaves(value: Any, segments: Sequence[str], at: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Any]]:
    """Each value the segments reach in a JSON-like value (dicts, lists), with its position in
    each list crossed on the way."""
    if not segments:
        yield at, value
    elif isinstance(value, dict):
        if segments[0] in value:
            yield from leaves(value[segments[0]], segments[1:], at)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from leaves(item, segments, (*at, position))


def json_values(record: Mapping[str, Any], name: str) -> list[Any] | None:
    """The values a `where` name reaches in a JSON object, or None if the object lacks it."""
    if not is_path(name):
        return [record[name]] if name in record else None
    found = [value for _, value in leaves(record, name.split("."))]
    if name in record:
        if found:
            raise Malformed(f"{name!r} names both a top-level key and a nested field")
        return [record[name]]
    return found or None
