"""Training-data snapshots: a location holds one folder per snapshot, each full of Parquet
files. Files holding the subject's rows are rewritten without them, atomically; the others
are only ever read, so their bytes and mtime stay as they were."""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.base import ConfigReader, Connector, Outcome, SnapshotHit, Subject, SystemConfig, as_integer
from connectors.snapshot_locations import LocalFolder
from worker.errors import PermanentError, TransientError

FORMATS = ("parquet",)
PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
T = TypeVar("T")


@dataclass(frozen=True)
class SnapshotConfig(SystemConfig):
    """A snapshot system: where its snapshots live, their format, which columns identify."""

    location: str = ""
    format: str = "parquet"
    where: tuple[tuple[str, str], ...] = ()  # (column, identifier type), ANDed
    endpoint_url: str | None = None

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "snapshot"`."""
        reader.only("name", "kind", "location", "format", "where", "endpoint_url")
        location = reader.text("location")
        if location.startswith("s3://"):
            raise reader.error("location", "object-store snapshots (s3://) are not supported yet")
        if "://" in location:
            raise reader.error("location", "must be a local folder")
        fmt = reader.text("format", "parquet")
        if fmt not in FORMATS:
            raise reader.error("format", f"unsupported format {fmt!r} (supported: {', '.join(FORMATS)})")
        where = reader.require("where", dict)
        if not where:
            raise reader.error("where", "names no column")
        return cls(
            name=reader.text("name"),
            kind="snapshot",
            location=location,
            format=fmt,
            where=tuple((column, reader.identifier(f"where.{column}", t)) for column, t in where.items()),
            endpoint_url=reader.optional("endpoint_url", str, "") or None,
        )

    @property
    def identifier_types(self) -> frozenset[str]:
        """The identifier types named in `where`."""
        return frozenset(t for _, t in self.where)


def value_set(values: Iterable[str], column_type: pa.DataType) -> pa.Array:
    """The values a column of this Arrow type can hold, typed like it; the rest are dropped."""
    if pa.types.is_dictionary(column_type):
        column_type = column_type.value_type
    typed = []
    for value in values:
        try:
            if pa.types.is_integer(column_type):
                number = as_integer(value)  # "42" is 42; "42abc" and "4.2e1" are nothing
                if number is not None:
                    typed.append(pa.scalar(number, column_type))
            elif pa.types.is_string(column_type) or pa.types.is_large_string(column_type):
                typed.append(pa.scalar(value, column_type))
            else:
                typed.append(pa.scalar(value).cast(column_type))
        except (pa.ArrowException, OverflowError, ValueError):
            continue
    return pa.array(typed, column_type)


def matching(data: pa.Table | pa.RecordBatch, sets: dict[str, pa.Array]) -> pa.ChunkedArray | pa.Array:
    """A boolean mask of the rows whose every `where` column holds one of the subject's values."""
    masks = [pc.is_in(data.column(column), value_set=values) for column, values in sets.items()]
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.and_(mask, other)
    return mask


def copy_without(parquet: pq.ParquetFile, sets: dict[str, pa.Array], sink: BinaryIO) -> int:
    """Copy a Parquet file to sink row group by row group, minus the matching rows; rows dropped."""
    meta = parquet.metadata
    codec = meta.row_group(0).column(0).compression if meta.num_row_groups else "snappy"
    removed = 0
    with pq.ParquetWriter(
        sink, parquet.schema_arrow, compression="none" if codec == "UNCOMPRESSED" else codec.lower()
    ) as writer:
        for index in range(meta.num_row_groups):
            group = parquet.read_row_group(index)
            kept = group.filter(pc.invert(matching(group, sets)))
            removed += group.num_rows - kept.num_rows
            if kept.num_rows:
                writer.write_table(kept, row_group_size=meta.row_group(index).num_rows)
    return removed


class SnapshotConnector(Connector):
    """Removes the subject's rows from every snapshot, rewriting only the files that hold them."""

    kind = "snapshot"
    config_class = SnapshotConfig
    config: SnapshotConfig

    def __init__(self, config: SnapshotConfig) -> None:
        super().__init__(config)
        self.folder = LocalFolder(Path(config.location))

    def locate(self, subject: Subject) -> tuple[SnapshotHit, ...]:
        """The snapshots holding the subject's rows, found without changing anything."""
        return self._hits({rel: n for rel in self._files() if (n := self._count(rel, subject))})

    def erase(self, subject: Subject) -> Outcome:
        """Rewrite each file holding the subject's rows without them."""
        removed: dict[str, int] = {}
        files = self._files()
        with self._errors("location"), self.folder.locked():
            for rel in files:
                if self._count(rel, subject):
                    removed[rel] = self._rewrite(rel, subject)
        evidence = [
            {"snapshot": self._snapshot(rel), "file": rel, "rows_removed": n} for rel, n in removed.items()
        ]
        return Outcome(sum(removed.values()), {"files": evidence}, self._hits(removed))

    def verify(self, subject: Subject) -> int:
        """How many of the subject's rows are left across every snapshot."""
        return sum(self._count(rel, subject) for rel in self._files())

    def _files(self) -> list[str]:
        if not self.folder.exists():
            raise PermanentError(f"snapshot {self.config.name}: location is not a folder")
        with self._errors("location"):
            return self.folder.data_files(f".{self.config.format}")

    def _snapshot(self, rel: str) -> str:
        return f"{self.config.name}:{rel.split('/', 1)[0]}"

    def _hits(self, rows: dict[str, int]) -> tuple[SnapshotHit, ...]:
        by_snapshot: dict[str, list[str]] = {}
        for rel in rows:
            by_snapshot.setdefault(self._snapshot(rel), []).append(rel)
        return tuple(
            SnapshotHit(snapshot, sum(rows[rel] for rel in files), tuple(files))
            for snapshot, files in by_snapshot.items()
        )

    def _value_sets(self, rel: str, schema: pa.Schema, subject: Subject) -> dict[str, pa.Array]:
        sets = {}
        for column, id_type in self.config.where:
            if column not in schema.names:
                raise PermanentError(f"snapshot {self.config.name}: {rel}: no column {column!r}")
            sets[column] = value_set(subject.values(id_type), schema.field(column).type)
        return sets

    def _count(self, rel: str, subject: Subject) -> int:
        """Rows of one file matching the subject, reading only the `where` columns."""
        if not all(subject.values(t) for t in self.config.identifier_types):
            return 0
        with self._errors(rel), pq.ParquetFile(self.folder.path(rel)) as parquet:
            sets = self._value_sets(rel, parquet.schema_arrow, subject)
            batches = parquet.iter_batches(columns=list(sets), use_threads=False)
            return sum(pc.sum(matching(batch, sets)).as_py() or 0 for batch in batches)

    def _rewrite(self, rel: str, subject: Subject) -> int:
        """Write one file again without the subject's rows; how many rows went."""
        with self._errors(rel), pq.ParquetFile(self.folder.path(rel)) as parquet:
            sets = self._value_sets(rel, parquet.schema_arrow, subject)
            return self.folder.replace(rel, lambda sink: copy_without(parquet, sets, sink))

    @contextmanager
    def _errors(self, rel: str) -> Iterator[None]:
        """Translate disk and Parquet errors into the project's, naming the system and file."""
        where = f"snapshot {self.config.name}: {rel}"
        try:
            yield
        except PermissionError as exc:
            raise PermanentError(f"{where}: permission denied") from exc
        except OSError as exc:
            if exc.errno is None:  # pyarrow reports a malformed Parquet file as a bare OSError
                raise PermanentError(f"{where}: not a readable Parquet file") from exc
            code = errno.errorcode.get(exc.errno, str(exc.errno))
            if exc.errno in PERMANENT_ERRNOS:
                raise PermanentError(f"{where}: {code}") from exc
            raise TransientError(f"{where}: {code}") from exc
        except pa.ArrowException as exc:
            raise PermanentError(f"{where}: not a readable Parquet file") from exc
