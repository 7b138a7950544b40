"""A LanceDB table (a folder, or an S3 prefix) as the vector kind reaches it.

A Lance delete only marks rows deleted: the data file keeps them, and every older version keeps
them too. So erasing a subject is, in this order:
1. find their rows (the where columns alone are read; those compared as stored are filtered by the
   engine, `col IN (...)` with each value as the column's type; folded text is matched here, by
   connectors/snapshot/match.py, as in a snapshot);
2. move every other row of the fragments holding them into a new fragment (an UPDATE that writes
   the rows again unchanged), so those fragments hold the subject's rows alone;
3. delete the subject's rows within those fragments, each compared as stored (`name IN ('MARY@x')`):
   the fragments are then empty and leave the table;
4. optimize: compact, remap the indexes, and remove the versions older than `cleanup_older_than`
   (0: all but the latest; the pass is repeated, as the remapped indexes make a version of their
   own after the cleanup) with their files, so the vectors leave the disk, indexes included.
Values go into the filter as SQL literals: integers written by Python, text quoted with `'`
doubled (Lance's parser takes every other character, backslash and control characters too,
literally). A row added between the look and the delete stays visible, and verify counts it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import lancedb
import pyarrow as pa

from connectors.base import Subject
from connectors.errors import PermanentError, TransientError, one_line
from connectors.snapshot.match import ArrowMatch, Malformed, Sought, typed
from connectors.snapshot.scan import BATCH_ROWS, WhereBatch, WhereColumn, compared
from connectors.vector.config import VectorConfig

ADDRESS = "_rowaddr"  # a row's place: its fragment's id in the high 32 bits
FRAGMENT = 1 << 32
CLEANUPS = 3  # optimize passes at most, to leave the latest version alone


class LanceBackend:
    """One LanceDB table: count, delete and compact by a subject's where values."""

    def __init__(self, config: VectorConfig) -> None:
        self.config = config
        self.label = f"vector {config.name}: lancedb table {config.table!r}"
        self._table: Any = None
        self.fragments_rewritten = 0

    @property
    def table(self) -> Any:
        """The table, opened on first use; it reads the latest version at each call."""
        if self._table is None:
            options = _storage_options(self.config)
            with self.errors("open", echo=True):
                db = lancedb.connect(self.config.uri, read_consistency_interval=timedelta(0),
                                     storage_options=options or None)
                self._table = db.open_table(self.config.table)
                _check_schema(self._table.schema, self.config, self.label)
        return self._table

    def count(self, subject: Subject) -> int:
        """How many of the subject's rows the latest version holds."""
        rows, _ = self._matches(subject)
        return rows.num_rows if rows is not None else 0

    def delete(self, subject: Subject) -> int:
        """Delete the subject's rows, leaving no fragment that holds them; how many went."""
        rows, predicate = self._matches(subject)
        if rows is None or not rows.num_rows:
            return 0
        self._refuse_tags()  # before anything changes: cleanup could not remove what a tag keeps
        fragments = sorted({address // FRAGMENT for address in rows.column(ADDRESS).to_pylist()})
        within = " OR ".join(f"({ADDRESS} >= {f * FRAGMENT} AND {ADDRESS} < {(f + 1) * FRAGMENT})" for f in fragments)
        first = self.config.where[0][0]
        with self.errors("rewrite"):
            self.table.update(where=f"({within}) AND ({predicate}) IS NOT TRUE", values_sql={first: _ident(first)})
        with self.errors("delete"):
            deleted = int(self.table.delete(f"({within}) AND ({predicate})").num_deleted_rows)
        if deleted < rows.num_rows:  # the fragments moved under us (a concurrent compaction): look again
            raise TransientError(f"{self.label}: rows moved while they were deleted; trying again")
        with self.errors("check"):
            left = self.table.count_rows(within)
        if left:
            raise PermanentError(f"{self.label}: {left} rows stayed in a rewritten fragment: "
                                 "erased vectors may remain on disk")
        self.fragments_rewritten = len(fragments)
        return deleted

    def where_values(self) -> Iterator[WhereBatch]:
        """Every row's where values as compared (the where columns alone are read), batch by batch."""
        columns = [column for column, _ in self.config.where]
        with self.errors("read"):
            data = self.table.search().select(columns).limit(None).to_arrow()
        for batch in data.to_batches(max_chunksize=BATCH_ROWS):
            yield WhereBatch(batch.num_rows, tuple(WhereColumn(key, compared(batch.column(key.column), key.fold), None)
                                                   for key in self.config.keys))

    def compact(self) -> dict[str, Any]:
        """Compact the table and remove old versions past `cleanup_older_than`, with their files."""
        self._refuse_tags()
        with self.errors("cleanup", echo=True):
            before = len(self.table.list_versions())
            age = timedelta(seconds=self.config.cleanup_older_than)
            for _ in range(CLEANUPS):  # optimizing indexes comes after the cleanup, in a version of its own
                with warnings.catch_warnings():  # "0 removes every version but the latest": that is the point
                    warnings.simplefilter("ignore", UserWarning)
                    self.table.optimize(cleanup_older_than=age)
                after = len(self.table.list_versions())
                if age or after == 1:
                    break
        return {"fragments_rewritten": self.fragments_rewritten, "versions_removed": max(before - after, 0),
                "versions_kept": after}

    def _refuse_tags(self) -> None:
        """Fail when a tag names an older version: cleanup keeps it, and the erased vectors with it."""
        with self.errors("tags", echo=True):
            latest = self.table.version
            tags = sorted(name for name, tag in self.table.tags.list().items() if tag["version"] != latest)
        if tags:
            raise PermanentError(
                f"{self.label}: tag(s) {', '.join(tags)} keep older versions that cleanup cannot remove, "
                "so erased vectors would stay on disk; delete or move the tags, then retry")

    def close(self) -> None:
        """Drop the table handle."""
        self._table = None

    def _matches(self, subject: Subject) -> tuple[pa.Table | None, str]:
        """The subject's rows (where columns and addresses) and the predicate naming their stored values."""
        sought = Sought(self.config.keys, [subject])
        if sought.nobody:
            return None, ""
        schema = self.table.schema
        pushed = _pushdown(sought, schema)
        if pushed is None:
            return None, ""
        columns = [column for column, _ in self.config.where]
        with self.errors("read"):
            query = self.table.search().select([*columns, ADDRESS]).limit(None)
            data = (query.where(pushed) if pushed else query).to_arrow()
        try:
            match = ArrowMatch(sought, data.schema)
            mask, _ = match.attribute(data)
        except Malformed as exc:
            raise PermanentError(f"{self.label}: {exc}") from exc
        if mask is None:
            return None, ""
        rows = data.filter(mask)
        predicate = " AND ".join(
            f"{_ident(column)} IN ({', '.join(_literal(v) for v in sorted(set(rows.column(column).to_pylist())))})"
            for column in columns
        )
        return rows, predicate

    @contextmanager
    def errors(self, action: str, echo: bool = False) -> Iterator[None]:
        """Translate LanceDB's errors, naming the system and table; the library's text only where no
        filter (with its values) can be in it."""
        where = f"{self.label} ({action})"
        try:
            yield
        except (PermanentError, TransientError):
            raise
        except (FileNotFoundError, PermissionError, ValueError) as exc:  # no such table or folder, a schema error
            raise PermanentError(f"{where}: {one_line(exc) if echo else type(exc).__name__}") from exc
        except (OSError, RuntimeError) as exc:  # the store, a commit conflict: may pass
            raise TransientError(f"{where}: {one_line(exc) if echo else type(exc).__name__}") from exc


def _pushdown(sought: Sought, schema: pa.Schema) -> str | None:
    """`col IN (...)` ANDed for the where columns compared as stored (the engine then filters), "" if
    none is, None if such a column can hold none of the values."""
    parts = []
    for key in sought.keys:
        kind = schema.field(key.column).type
        if key.fold is not None and _text(kind):
            continue  # folded: matched here, after the read
        values = {v for v in (typed(value, kind) for value in sought.owners[key.column]) if v is not None}
        if not values:
            return None
        parts.append(f"{_ident(key.column)} IN ({', '.join(_literal(v) for v in sorted(values))})")
    return " AND ".join(parts)


def _check_schema(schema: pa.Schema, config: VectorConfig, label: str) -> None:
    """Every where column is there, and holds text or numbers."""
    for column, _ in config.where:
        if schema.get_field_index(column) < 0:
            raise PermanentError(f"{label}: no column {column!r}")
        kind = schema.field(column).type
        if not (_text(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise PermanentError(f"{label}: column {column!r} is {kind}; a where column holds text or numbers")


def _text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _literal(value: Any) -> str:
    """A value as Lance SQL reads it back exactly."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        raise TypeError("a boolean identifies nobody")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():  # a float matches only a plain integer equal to it
        return f"{int(value)}.0"
    raise TypeError(f"no literal for a {type(value).__name__}")


def _ident(column: str) -> str:
    """A column name quoted, so a keyword (`user`, `order`) is still a column."""
    return f"`{column}`"


def _storage_options(config: VectorConfig) -> dict[str, str]:
    """How to reach an s3:// uri: the endpoint of an S3-compatible store, and the region."""
    options = {}
    if config.endpoint_url:
        options["endpoint"] = config.endpoint_url
        if config.endpoint_url.startswith("http://"):
            options["allow_http"] = "true"
    if config.region:
        options["region"] = config.region
    return options
