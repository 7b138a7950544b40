"""Training-data snapshots: a location holds one folder per snapshot, each full of data files
(Parquet, JSON lines, CSV, gzipped or not) or a Delta table. Files holding a subject's rows are
rewritten without them, atomically; the others are only ever read, so their bytes and mtime
stay as they were. Many subjects share one pass: each file is read once for all of them and
rewritten at most once, and each subject gets its own counts, evidence and snapshot hits.

A file lacking a `where` column fails the system (PermanentError naming the file and the column),
for a miss there would be certified as an erasure; with `on_missing_column = "skip"` it is left
untouched by erase, verify and locate alike, and each outcome lists it in `files_skipped`."""

from __future__ import annotations

import errno
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any, TypeVar

import pyarrow as pa

from connectors.base import Checked, Connector, Journal, Outcome, Part, Patterns, Preview, SnapshotHit, Subject
from connectors.errors import PermanentError, TransientError
from connectors.snapshot import preview, probe
from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.formats import format_of, suffixes
from connectors.snapshot.locations import open_location
from connectors.snapshot.locations.base import Location
from connectors.snapshot.match import Malformed, MissingColumn, Sought
from connectors.spreading import Rewritten

PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
T = TypeVar("T")


class SnapshotConnector(Connector):
    """Removes subjects' rows from every snapshot, rewriting only the files that hold them."""

    kind = "snapshot"
    config_class = SnapshotConfig
    config: SnapshotConfig
    batches = True

    def __init__(self, config: SnapshotConfig) -> None:
        super().__init__(config)
        self._location: Location | None = None
        self._delta: Any = None
        self._last_sought: tuple[tuple[Subject, ...], Sought] | None = None

    @property
    def location(self) -> Location:
        """Where the system's files live, opened on first use."""
        if self._location is None:
            self._location = open_location(self.config)
        return self._location

    def locate(self, subject: Subject) -> tuple[SnapshotHit, ...]:
        """The snapshots holding the subject's rows, found without changing anything."""
        return self.locate_many([subject])[0]

    def erase(self, subject: Subject) -> Outcome:
        """Rewrite each file holding the subject's rows without them."""
        return self.erase_many([subject])[0]

    def verify(self, subject: Subject) -> int:
        """How many of the subject's rows are left across every snapshot."""
        return self.verify_many([subject])[0]

    def locate_many(self, subjects: Sequence[Subject]) -> list[tuple[SnapshotHit, ...]]:
        """For each subject, the snapshots holding their rows; each file is read once for all."""
        if self.config.format == "delta":
            return list(self._engine().locate_many(subjects))
        counts = self._counts(self._sought(subjects), [])
        return [self._hits({rel: n[i] for rel, n in counts.items() if n[i]}) for i in range(len(subjects))]

    def verify_many(self, subjects: Sequence[Subject]) -> list[int]:
        """For each subject, how many of their rows are left; each file is read once for all."""
        if self.config.format == "delta":
            return list(self._engine().verify_many(subjects))
        counts = self._counts(self._sought(subjects), [])
        return [sum(n[i] for n in counts.values()) for i in range(len(subjects))]

    def erase_many(self, subjects: Sequence[Subject], journal: Journal | None = None) -> list[Outcome]:
        """Rewrite each file holding any subject's rows once, without all of them; an outcome each.
        `journal` hears of each file's removed rows before the file is swapped in."""
        if self.config.format == "delta":
            return list(self._engine().erase_many(subjects, journal))
        return self.outcomes(len(subjects), self._erase(self._sought(subjects), None, journal))

    def split(self, most_bytes: int) -> list[list[str]]:
        """The location's data files, in order, in parts of up to `most_bytes` each (a larger file
        is a part alone), for passes spread over workers; a Delta table is never split: []."""
        if self.config.format == "delta":
            return []
        self._check_location()
        parts: list[list[str]] = []
        size = 0
        for rel in self._files():
            with self._errors(rel):
                n = self.location.size(rel)
            if parts and size + n <= most_bytes:
                parts[-1].append(rel)
                size += n
            else:
                parts.append([rel])
                size = n
        return parts

    def locate_files(self, subjects: Sequence[Subject], files: Sequence[str]) -> list[tuple[SnapshotHit, ...]]:
        """locate_many() over those of `files` still there."""
        counts = self._counts(self._sought(subjects), [], files)
        return [self._hits({rel: n[i] for rel, n in counts.items() if n[i]}) for i in range(len(subjects))]

    def erase_files(self, subjects: Sequence[Subject], files: Sequence[str],
                    journal: Journal | None = None) -> Rewritten:
        """erase_many() over those of `files` still there, each under its own file lock (other workers
        rewrite other files meanwhile); what it did, per file and subject."""
        return self._erase(self._sought(subjects), files, journal)

    def verify_files(self, subjects: Sequence[Subject], files: Sequence[str]) -> list[int]:
        """verify_many() over those of `files` still there."""
        counts = self._counts(self._sought(subjects), [], files)
        return [sum(n[i] for n in counts.values()) for i in range(len(subjects))]

    def outcomes(self, subjects: int, done: Rewritten) -> list[Outcome]:
        """Each subject's outcome of what rewrites did (one pass's, or its parts' put together)."""
        return [self._outcome(i, done.removed, done.purged, done.skipped) for i in range(subjects)]

    def _erase(self, sought: Sought, files: Sequence[str] | None, journal: Journal | None) -> Rewritten:
        """Rewrite every file (under the location's lock), or those of `files` still there (each under
        its own), without the sought rows, and delete their older versions holding them."""
        done = Rewritten({}, {}, [])
        if sought.nobody:
            return done
        self._check_location()
        with self._errors("location"), self.location.locked() if files is None else nullcontext():
            for rel in self._files() if files is None else self._present(files):
                with nullcontext() if files is None else self.location.locked_file(rel):
                    if rows := self._rewrite(rel, sought, journal, done.skipped):
                        done.removed[rel] = rows
                    done.purged[rel] = self._purge(rel, sought, done.skipped)
        return done

    def _present(self, files: Sequence[str]) -> list[str]:
        """Those of `files` the location still lists (retention may have deleted some since)."""
        there = set(self._files())
        return [rel for rel in files if rel in there]

    def close(self) -> None:
        """Release the Delta engine, if one was opened."""
        if self._delta is not None:
            self._delta.close()
            self._delta = None

    def _engine(self) -> Any:
        """The Delta table engine, imported on first use: the deltalake package is optional."""
        if self._delta is None:
            try:
                from connectors.snapshot.delta import DeltaEngine  # deltalake: the optional [delta] extra
            except ImportError as exc:
                raise PermanentError(f"snapshot {self.config.name}: format delta needs the deltalake package") from exc
            self._delta = DeltaEngine(self.config)
        return self._delta

    def snapshots(self) -> dict[str, list[str]]:
        """Each snapshot folder of the location with its data files (`FOLDER/.../FILE`), sorted; {} when
        the location is not there. A data file outside any folder belongs to no snapshot."""
        with self._errors("location"):
            if not self.location.exists():
                return {}
        found: dict[str, list[str]] = {}
        for rel in sorted(self._files()):
            folder, sep, _ = rel.partition("/")
            if sep:
                found.setdefault(folder, []).append(rel)
        return found

    def _sought(self, subjects: Sequence[Subject]) -> Sought:
        """The values the subjects are sought by; the last one made is kept (with the typed values it
        works out per file schema), as a pass's locate, erase and verify, and each part of a pass
        spread over workers, seek the same subjects."""
        key, last = tuple(subjects), self._last_sought
        if last is None or last[0] != key:
            last = self._last_sought = (key, Sought(self.config.keys, subjects))
        return last[1]

    def _check_location(self) -> None:
        with self._errors("location"):
            there = self.location.exists()
        if not there:
            raise PermanentError(f"snapshot {self.config.name}: location is not there")

    def _files(self) -> list[str]:
        with self._errors("location"):
            return self.location.data_files(suffixes(self.config.format))

    def _counts(self, sought: Sought, skipped: list[dict[str, Any]],
                files: Sequence[str] | None = None) -> dict[str, list[int]]:
        """Each file's (or each of `files` still there) rows per subject, reading each file once, changing nothing."""
        self._check_location()
        if sought.nobody:
            return {}
        counts = {}
        for rel in self._files() if files is None else self._present(files):
            with self._errors(rel), self._unless_missing(rel, skipped), self.location.reading(rel) as path:
                counts[rel] = format_of(self.config.format, rel).count(path, sought)
        return counts

    def _rewrite(self, rel: str, sought: Sought, journal: Journal | None,
                 skipped: list[dict[str, Any]]) -> list[int] | None:
        """Write a file again without any subject's rows if it holds some; rows removed per subject."""
        fmt = format_of(self.config.format, rel)
        tell = None if journal is None else (lambda rows: journal(rel, rows))
        with self._errors(rel), self._unless_missing(rel, skipped), self.location.reading(rel) as path:
            if not fmt.holds(path, sought):
                return None  # never opened for writing: bytes and mtime stay
            return self.location.replace(rel, lambda sink: fmt.rewrite(path, sought, sink), tell)
        return None  # lacks a where column, and skipped

    def _purge(self, rel: str, sought: Sought, skipped: list[dict[str, Any]]) -> list[int]:
        """Delete a file's older versions holding any subject; per subject, how many held theirs."""
        held = sought.zeros()
        fmt = format_of(self.config.format, rel)

        def holds(path: str) -> bool:
            counts = None
            with self._unless_missing(rel, skipped, older=True):
                counts = fmt.count(path, sought)
            for subject, n in enumerate(counts or ()):
                held[subject] += bool(n)
            return any(counts or ())

        with self._errors(rel):
            total = self.location.purge_history(rel, holds)
        return [min(n, total) for n in held]

    def _outcome(self, subject: int, removed: dict[str, list[int]], purged: dict[str, list[int]],
                 skipped: list[dict[str, Any]]) -> Outcome:
        """One subject's share of a batch's erasure: their rows, files and snapshots."""
        files = []
        for rel in sorted(removed.keys() | purged.keys()):
            rows = removed[rel][subject] if rel in removed else 0
            older = purged[rel][subject] if rel in purged else 0
            if rows or older:
                entry: dict[str, Any] = {"snapshot": self._snapshot(rel), "file": rel, "rows_removed": rows}
                files.append(entry | ({"older_versions_removed": older} if older else {}))
        rows_by_file = {rel: n[subject] for rel, n in removed.items() if n[subject]}
        evidence: dict[str, Any] = {"files": files} | ({"files_skipped": list(skipped)} if skipped else {})
        return Outcome(sum(rows_by_file.values()), evidence, self._hits(rows_by_file))

    def with_earlier(self, outcome: Outcome, earlier: Mapping[str, int]) -> Outcome:
        """The outcome plus the files an earlier attempt swapped in (file -> rows it removed) that this one
        found already clean: each listed among its `files`, marked `by_an_earlier_attempt`."""
        files = [*outcome.evidence.get("files", []), *({"file": rel, "rows_removed": n, "by_an_earlier_attempt": True}
                                                      for rel, n in sorted(earlier.items()))]
        return replace(outcome, items_erased=outcome.items_erased + sum(earlier.values()),
                       evidence={**outcome.evidence, "files": files})

    def _snapshot(self, rel: str) -> str:
        return f"{self.config.name}:{rel.split('/', 1)[0]}"

    def _hits(self, rows: dict[str, int]) -> tuple[SnapshotHit, ...]:
        by_snapshot: dict[str, list[str]] = {}
        for rel in sorted(rows):
            by_snapshot.setdefault(self._snapshot(rel), []).append(rel)
        return tuple(
            SnapshotHit(snapshot, sum(rows[rel] for rel in files), tuple(files))
            for snapshot, files in by_snapshot.items()
        )

    @contextmanager
    def _unless_missing(self, rel: str, skipped: list[dict[str, Any]], older: bool = False) -> Iterator[None]:
        """Let a file lacking a where column fail the system, or with `on_missing_column = "skip"`
        leave it and list it."""
        try:
            yield
        except MissingColumn as exc:
            if self.config.on_missing_column != "skip":
                raise
            entry = {"file": rel, "missing": exc.column} | ({"older_version": True} if older else {})
            if entry not in skipped:  # once per file, however many older versions lack the column
                skipped.append(entry)

    @contextmanager
    def _errors(self, rel: str) -> Iterator[None]:
        """Translate disk, format and decoding errors into the project's, naming the system and file."""
        where = f"snapshot {self.config.name}: {rel}"
        unreadable = f"{where}: not a readable {self._label(rel)} file"
        try:
            yield
        except Malformed as exc:
            raise PermanentError(f"{where}: {exc}") from exc
        except PermissionError as exc:
            raise PermanentError(f"{where}: permission denied") from exc
        except OSError as exc:
            if exc.errno is None:  # pyarrow and gzip report a malformed file as a bare OSError
                raise PermanentError(unreadable) from exc
            code = errno.errorcode.get(exc.errno, str(exc.errno))
            if exc.errno in PERMANENT_ERRNOS:
                raise PermanentError(f"{where}: {code}") from exc
            raise TransientError(f"{where}: {code}") from exc
        except (pa.ArrowException, EOFError, zlib.error) as exc:  # EOFError: a truncated gzip file
            raise PermanentError(unreadable) from exc

    def _label(self, rel: str) -> str:
        label = format_of(self.config.format, rel).label if self.config.format != "delta" else "Delta"
        return f"gzipped {label}" if rel.endswith(".gz") else label

    def preview(self, subject: Subject) -> Preview:
        """The snapshots, files and rows erase() would rewrite, found by its count pass (preview.py)."""
        return preview.look(self, subject)

    def export(self, subject: Subject, *, contents: bool = False) -> Iterator[Part]:
        """The subject's rows of each snapshot that holds them (preview.py)."""
        return preview.read(self, subject)

    def check(self, patterns: Patterns | None = None) -> Checked:
        """The location, and every data file's where columns, read-only (probe.py)."""
        return probe.check(self, patterns)
