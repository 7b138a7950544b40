"""Delta Lake tables as snapshot systems: each table version is a snapshot, `SYSTEM:VERSION`.

Erasing finds first which versions held each subject (by counting the rows of every data
file those versions reference, each file once), then deletes the subjects' rows in one
commit, vacuums every file no longer current (`full=True`), checkpoints, and removes the
log entries of the older versions, so neither time travel nor the log's statistics (or the
delete's own commit, which records its predicate) return them. `retention_hours` keeps the
versions removed less than that long ago, for readers in flight; the subject stays `exempt`
until then and is erased again. Deletion vectors, column mapping and partition columns in
`where` are refused: this module reads the data files itself.

Rows are counted by snapshot_match, text folded as the request's value was (NFC, trim, lower,
upper). The DELETE predicate does not fold: DataFusion has no Unicode normalization, and its
lower() and upper() are not Python's. It names instead, per subject, the stored values this
module counted as theirs, where it found them (`"email" IN ('Mary@X', 'MARY@x')`, a struct's
`"meta"['email']`, a list element's `"people"[2]['email']`), compared exactly: a row it deletes
is one the module counted, and a row counted in the current version is one it deletes; a delete
that removed anything else is undone all the same. `where` may name a dotted path into structs
and lists of structs (snapshot_paths), whose values must be strings or integers."""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, DeltaProtocolError, TableNotFoundError

from connectors.base import Journal, Outcome, SnapshotHit, Subject, as_integer
from connectors.errors import PermanentError, TransientError
from connectors.snapshot.locations.local import LocalFolder
from connectors.snapshot.match import ArrowMatch, Malformed, MissingColumn, Sought
from connectors.snapshot.paths import ArrowPath, arrow_path, leaves

SAFE = frozenset(string.ascii_letters + string.digits + " @._+-:/=#,!~")  # the rest go in as chr(n)
REFUSED_FEATURES = frozenset({"deletionVectors", "columnMapping"})
COMMIT = re.compile(r"(\d{20})\.json")
CHECKPOINT = re.compile(r"(\d{20})\.checkpoint(\.[0-9a-zA-Z-]+)*\.(parquet|json)")
LOG_ENTRY = re.compile(r"(\d{20})\.(?:(\d{20})\.compacted\.json|json|crc|checkpoint\..+)")
Spellings = dict[int, dict[tuple[int, ...], set[Any]]]  # per where column: list positions -> stored values


@dataclass
class FileCount:
    """One data file's rows: in all, matching any subject, and matching each, with the stored
    values each subject's rows matched by."""

    rows: int
    matched: int
    each: list[int]
    spellings: list[Spellings] = field(default_factory=list)


def column_name(column: str) -> str:
    """A column as a quoted SQL identifier."""
    return '"' + column.replace('"', '""') + '"'


def accessor(path: ArrowPath, positions: tuple[int, ...]) -> str:
    """A stored value as SQL: its column, then its struct fields and list elements (1-based)."""
    at = iter(positions)
    steps = (f"[{next(at) + 1}]" if step is None else "['" + step[0].replace("'", "''") + "']" for step in path.steps)
    return column_name(path.top) + "".join(steps)


def literal(value: str, column_type: pa.DataType) -> str | None:
    """The value as a SQL literal of the column's type, or None if the column cannot hold it.

    Integers are written back from int(); strings keep only SAFE characters between quotes
    and spell every other one as chr(n), so no value can close a literal or change the SQL."""
    if pa.types.is_integer(column_type):
        number = as_integer(value)  # "42abc", "4.2e1" and "" are no integer
        try:
            return None if number is None else str(pa.scalar(number, column_type).as_py())
        except (pa.ArrowException, OverflowError):
            return None  # 300 in a byte column: no row can hold it
    if not value:
        return None
    parts: list[str] = []
    for char in value:
        if char in SAFE and parts and parts[-1].startswith("'"):
            parts[-1] = parts[-1][:-1] + char + "'"
        else:
            parts.append("'" + char.replace("'", "''") + "'" if char in SAFE else f"chr({ord(char)})")
    return parts[0] if len(parts) == 1 else f"concat({', '.join(parts)})"


def predicate(paths: Sequence[ArrowPath], found: Sequence[Spellings]) -> str | None:
    """One DELETE predicate for every subject: each where column (ANDed) equal to a stored value
    counted as the subject's, where it was found (ORed); None if no subject has a row."""
    clauses = []
    for spellings in found:
        parts = []
        for index, path in enumerate(paths):
            tests = []
            for positions, values in sorted(spellings.get(index, {}).items()):
                literals = sorted({lit for v in values if (lit := literal(str(v), path.leaf)) is not None})
                if literals:
                    tests.append(f"{accessor(path, positions)} IN ({', '.join(literals)})")
            if not tests:
                break  # no row of this subject's in the current version
            parts.append(tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")")
        else:
            clauses.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(clauses) or None


class DeltaEngine:
    """Erases subjects from a local Delta table and from every version time travel can reach."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.root = os.path.abspath(config.location)
        self.hours = math.ceil(config.retention_hours)  # vacuum takes whole hours: round towards keeping
        self.where = f"snapshot {config.name}"

    def locate_many(self, subjects: Sequence[Subject]) -> list[tuple[SnapshotHit, ...]]:
        """For each subject, the table versions holding their rows; nothing is changed."""
        sought = Sought(self.config.keys, subjects)
        if sought.nobody or self._skipped():
            return [() for _ in subjects]
        held, _ = self._scan(sought, {})
        return [self._hits(held, i) for i in range(len(subjects))]

    def verify_many(self, subjects: Sequence[Subject]) -> list[int]:
        """For each subject, rows left in the current version or reachable by time travel."""
        sought = Sought(self.config.keys, subjects)
        if sought.nobody or self._skipped():
            return [0 for _ in subjects]
        counts: dict[str, FileCount] = {}
        _, paths = self._scan(sought, counts)
        return [sum(counts[p].each[i] for p in paths) for i in range(len(subjects))]

    def erase_many(self, subjects: Sequence[Subject], journal: Journal | None = None) -> list[Outcome]:
        """Delete the subjects' rows in one commit, then vacuum and trim the log; an outcome each. `journal`
        hears, before the commit, each current file holding their rows and its rows per subject: what the
        commit will have removed, so a worker killed after it and before the store's record loses no count."""
        sought = Sought(self.config.keys, subjects)
        if sought.nobody:
            return [Outcome(0) for _ in subjects]
        if missing := self._skipped():  # a missing table fails here, before the lock file is made
            return [Outcome(0, {"table_skipped": {"missing": missing}}) for _ in subjects]
        counts: dict[str, FileCount] = {}
        with self._errors(), LocalFolder(Path(self.root)).locked():
            held, _ = self._scan(sought, counts)
            table = self._open()
            current = self._files(table)
            found = [self._spellings(current, counts, i) for i in range(len(subjects))]
            text = predicate(self._paths(table), found)
            if journal is not None and text:
                for path in current:
                    if path in counts and any(counts[path].each):
                        journal(self._relative(path), list(counts[path].each))
            version, removed = self._delete(table, text, sought, counts) if text else (None, [])
            vacuumed, trimmed, kept = self._purge(table) if held or version is not None else (0, 0, None)
            _, paths = self._scan(sought, counts)
        outcomes = []
        for i in range(len(subjects)):
            mine = [(self._relative(p), counts[p].each[i]) for p in removed if counts[p].each[i]]
            evidence = {
                "table_version": version,
                "versions_held": sorted(v for v, files in held.items() if any(c[i] for c in files.values())),
                "files": [{"file": rel, "rows_removed": n} for rel, n in mine],
                "files_vacuumed": vacuumed,
                "log_entries_removed": trimmed,
                "versions_kept": kept,
            }
            left = sum(counts[p].each[i] for p in paths)
            exempt = kept is not None and left > 0 and self.hours > 0
            outcomes.append(Outcome(
                sum(n for _, n in mine), evidence, self._hits(held, i),
                exempt_reason=f"Delta retention_hours = {self.hours}: versions {kept} keep removed files for readers"
                if exempt else None,
                recheck_at=datetime.now(UTC) + timedelta(hours=self.hours, minutes=1) if exempt else None,
            ))
        return outcomes

    def close(self) -> None:
        """Nothing to release: each call opens the table afresh."""

    def _open(self, version: int | None = None) -> DeltaTable:
        with self._errors():
            return DeltaTable(self.root, version=version)

    def _skipped(self) -> str | None:
        """The where column the table lacks, if `on_missing_column = "skip"` (else PermanentError); or None."""
        try:
            self._paths(self._open())
        except MissingColumn as exc:
            if self.config.on_missing_column != "skip":
                raise PermanentError(f"{self.where}: the Delta table has no column {exc.column!r}") from exc
            return exc.column
        return None

    def _paths(self, table: DeltaTable) -> list[ArrowPath]:
        """Where each `where` column is in the table; refuse what this module cannot erase exactly."""
        features = set(table.protocol().reader_features or ())
        metadata = table.metadata()
        if features & REFUSED_FEATURES or metadata.configuration.get("delta.columnMapping.mode", "none") != "none":
            raise PermanentError(f"{self.where}: deletion vectors and column mapping are not supported")
        with self._errors():
            schema = pa.schema(table.schema().to_arrow())
        try:
            paths = [arrow_path(schema, column) for column, _ in self.config.where]
        except MissingColumn:
            raise  # the caller decides whether the table is skipped
        except Malformed as exc:
            raise PermanentError(f"{self.where}: {exc}") from exc
        for path in paths:
            if path.top in metadata.partition_columns:
                raise PermanentError(f"{self.where}: {path.top!r} is a partition column, which `where` cannot use")
            leaf = path.leaf
            if not (pa.types.is_integer(leaf) or leaf in (pa.string(), pa.large_string(), pa.string_view())):
                raise PermanentError(f"{self.where}: column {path.name!r} is {leaf}, not integer or string")
        return paths

    def _spellings(self, files: list[str], counts: dict[str, FileCount], index: int) -> Spellings:
        """The stored values one subject's rows in these files matched by, per where column and place."""
        merged: Spellings = {}
        for path in files:
            for column, places in (counts[path].spellings[index] if counts[path].spellings else {}).items():
                for positions, values in places.items():
                    merged.setdefault(column, {}).setdefault(positions, set()).update(values)
        return merged

    def _scan(self, sought: Sought, counts: dict[str, FileCount]) -> tuple[dict[int, dict[str, list[int]]], set[str]]:
        """Per reachable version, its files holding any subject's rows; and every file reachable."""
        table = self._open()
        self._paths(table)
        held: dict[int, dict[str, list[int]]] = {}
        paths: set[str] = set()
        for version in self._reachable(table.version()):
            files = self._files(table if version == table.version() else self._open(version))
            paths.update(files)
            for path in files:
                if (count := self._count(path, sought, counts)).matched:
                    held.setdefault(version, {})[self._relative(path)] = count.each
        return held, paths

    def _reachable(self, latest: int) -> list[int]:
        """The versions time travel can load: a checkpoint or version 0, then unbroken commits."""
        names = os.listdir(os.path.join(self.root, "_delta_log"))
        commits = {int(m[1]) for n in names if (m := COMMIT.fullmatch(n))}
        checkpoints = {int(m[1]) for n in names if (m := CHECKPOINT.fullmatch(n))}
        reachable, chained = [], False
        for version in range(min(commits | checkpoints | {latest}), latest + 1):
            chained = version in checkpoints or (version in commits and (chained or version == 0))
            if chained:
                reachable.append(version)
        return reachable

    def _files(self, table: DeltaTable) -> list[str]:
        with self._errors():
            return [uri.removeprefix("file://") for uri in table.file_uris()]

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def _hits(self, held: dict[int, dict[str, list[int]]], index: int) -> tuple[SnapshotHit, ...]:
        """The versions that held one subject's rows, with how many and in which files."""
        hits = []
        for version, files in sorted(held.items()):
            mine = sorted(rel for rel, each in files.items() if each[index])
            if mine:
                rows = sum(files[rel][index] for rel in mine)
                hits.append(SnapshotHit(f"{self.config.name}:{version}", rows, tuple(mine)))
        return tuple(hits)

    def _count(self, path: str, sought: Sought, counts: dict[str, FileCount]) -> FileCount:
        """A data file's rows matching each subject, reading only the `where` columns; once per file."""
        if path in counts:
            return counts[path]
        with self._errors(self._relative(path)), pq.ParquetFile(path) as parquet:
            count = FileCount(parquet.metadata.num_rows, 0, sought.zeros(), [{} for _ in range(sought.size)])
            try:
                match: ArrowMatch | None = ArrowMatch(sought, parquet.schema_arrow)
            except MissingColumn:
                match = None  # a column added after this file was written: null in all its rows
            if match is not None and not match.nobody:
                for batch in parquet.iter_batches(columns=match.columns, use_threads=False):
                    data = pa.Table.from_batches([batch])
                    owned = match.owned(data)
                    count.matched += len(owned)
                    for _, whose in owned:
                        for index in whose:
                            count.each[index] += 1
                    _spell(data, match, owned, count.spellings)
        counts[path] = count
        return count

    def _delete(
        self, table: DeltaTable, text: str, sought: Sought, counts: dict[str, FileCount]
    ) -> tuple[int | None, list[str]]:
        """Delete the rows; undo it unless it removed exactly the rows counted as the subjects'."""
        before = table.version()
        table.delete(text)
        version = table.version()
        if version == before:
            return None, []
        old, new = set(self._files(self._open(version - 1))), set(self._files(table))
        removed = [self._count(p, sought, counts) for p in sorted(old - new)]
        added = [self._count(p, sought, counts) for p in sorted(new - old)]
        gone = sum(c.rows for c in removed) - sum(c.rows for c in added)
        if gone != sum(c.matched for c in removed) or any(c.matched for c in added):
            undone = self._open().version() == version
            if undone:
                table.restore(version - 1)
            raise PermanentError(
                f"{self.where}: Delta version {version} removed rows that were not counted as the subjects'; "
                + (f"restored version {version - 1}" if undone else f"restore version {version - 1} by hand")
            )
        return version, sorted(old - new)

    def _purge(self, table: DeltaTable) -> tuple[int, int, str]:
        """Vacuum every file no longer current, checkpoint, drop older log entries; counts and versions kept."""
        table.update_incremental()  # vacuum keeps only what the version it has loaded references
        vacuumed = table.vacuum(
            retention_hours=self.hours, dry_run=False, enforce_retention_duration=False, full=True
        )
        table.update_incremental()
        latest = table.version()
        log = Path(self.root, "_delta_log")
        cutoff = datetime.now(UTC).timestamp() - self.hours * 3600
        reachable = set(self._reachable(latest))
        first = latest  # the oldest version to keep: it stopped being current within the retention
        while first - 1 in reachable and (log / f"{first:020}.json").stat().st_mtime > cutoff:
            first -= 1
        if first < latest:
            self._open(first).create_checkpoint()
        table.create_checkpoint()  # last, so _last_checkpoint names the newest
        trimmed = 0
        for name in sorted(os.listdir(log)):
            if (m := LOG_ENTRY.fullmatch(name)) and int(m[2] or m[1]) < first:
                (log / name).unlink()
                trimmed += 1
        return len(vacuumed), trimmed, f"{first}-{latest}"

    @contextmanager
    def _errors(self, file: str | None = None) -> Iterator[None]:
        """Translate deltalake, Arrow and disk errors into the project's, naming system and file."""
        where = f"{self.where}: {file}" if file else self.where
        try:
            yield
        except (PermanentError, TransientError):
            raise
        except CommitFailedError as exc:
            raise TransientError(f"{where}: a concurrent writer committed first") from exc
        except TableNotFoundError as exc:
            raise PermanentError(f"{where}: {self.config.location} is not a Delta table") from exc
        except DeltaProtocolError as exc:
            raise PermanentError(f"{where}: the table needs a Delta protocol feature deltalake lacks") from exc
        except DeltaError as exc:
            raise PermanentError(f"{where}: Delta operation failed ({type(exc).__name__})") from exc
        except Malformed as exc:
            raise PermanentError(f"{where}: {exc}") from exc
        except PermissionError as exc:
            raise PermanentError(f"{where}: permission denied") from exc
        except FileNotFoundError as exc:
            raise PermanentError(f"{where}: a file the table names is missing") from exc
        except OSError as exc:
            if exc.errno is None:  # pyarrow's malformed Parquet
                raise PermanentError(f"{where}: not a readable Parquet file") from exc
            raise TransientError(f"{where}: {os.strerror(exc.errno)}") from exc
        except pa.ArrowException as exc:
            raise PermanentError(f"{where}: not a readable Parquet file") from exc


def _spell(data: pa.Table, match: ArrowMatch, owned: list[tuple[int, frozenset[int]]],
           spellings: list[Spellings]) -> None:
    """Note, per subject, the stored values (and their places) its rows of a batch matched by."""
    if not owned:
        return
    taken = pa.array([row for row, _ in owned], pa.int64())
    tops = {path.top: path.column(data).take(taken).to_pylist() for path in match.paths}
    sought = match.sought
    for index, (key, path) in enumerate(zip(sought.keys, match.paths, strict=True)):
        segments = [step[0] for step in path.steps if step is not None]
        for row, (_, whose) in enumerate(owned):
            for positions, value in leaves(tops[path.top][row], segments):
                for subject in whose & sought.whose_value(key, value):
                    spellings[subject].setdefault(index, {}).setdefault(positions, set()).add(value)
