"""`erasure guard check SYSTEM:SNAPSHOT [--fix]`: a gate before training on a snapshot.

Every `where` value of every file of the snapshot folder is read as the connector compares it,
each distinct one hashed as the guard list hashes a request's value (after its type's fold), and
looked up among the store's digests; a row holding a guarded value in any `where` column is a
guarded subject's. What is reported is counted per identifier type and per file, never a value.

`--fix` erases those rows in one batched pass of the system's connector, confined to the folder:
for each such row a subject of the values it holds as compared (of a type with a guarded value,
the guarded ones alone), so whatever the pass removes holds a guarded value. It then checks again,
flags every model version already trained on the snapshot for the requests the guarded values
came from, and records the audit event `guard.fixed` (counts only)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from connectors import redact
from connectors.base import Outcome, Subject, every_one
from connectors.snapshot.config import SnapshotConfig
from connectors.snapshot.scan import SnapshotFolder, WhereBatch
from connectors.vector.config import VectorConfig
from connectors.vector.connector import VectorConnector
from worker.engine import audit, guard_list, lineage
from worker.errors import InputError
from worker.guard import Guard
from worker.runtime import Runtime

log = structlog.get_logger("erasure.guard")
SubjectKey = tuple[tuple[str, tuple[str, ...]], ...]
Owners = Mapping[str, Mapping[bytes, str]]  # type -> digest -> the request it came from


@dataclass
class Scan:
    """What one reading of a snapshot found: per file, the rows holding a guarded value (in all, and
    by identifier type); the distinct guarded values per type (as digests), the requests they came
    from, and the subjects that erase those rows."""

    files_checked: int = 0
    rows: int = 0
    types: Counter[str] = field(default_factory=Counter)  # type -> rows holding a guarded value of it
    files: dict[str, tuple[int, Counter[str]]] = field(default_factory=dict)  # file -> rows, types
    values: dict[str, set[bytes]] = field(default_factory=dict)
    requests: set[str] = field(default_factory=set)
    subjects: dict[SubjectKey, Subject] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def take_in(self, rel: str, other: Scan) -> None:
        """Add one file's findings."""
        self.files_checked += 1
        if not other.rows:
            return
        self.rows += other.rows
        self.types.update(other.types)
        self.files[rel] = (other.rows, other.types)
        for id_type, digests in other.values.items():
            self.values.setdefault(id_type, set()).update(digests)
        self.requests |= other.requests
        self.subjects.update(other.subjects)

    def to_json(self) -> dict[str, Any]:
        """Counts per type and per file, never a value."""
        return {
            "files_checked": self.files_checked, "rows": self.rows,
            "types": {t: {"rows": n, "values": len(self.values.get(t, ()))} for t, n in sorted(self.types.items())},
            "files": [{"file": rel, "rows": rows, "types": dict(sorted(types.items()))}
                      for rel, (rows, types) in sorted(self.files.items())],
        } | ({"files_skipped": self.skipped} if self.skipped else {})


@dataclass(frozen=True)
class Checked:
    """What `erasure guard check` found, and what `--fix` did."""

    snapshot: str
    found: Scan
    fixed: dict[str, Any] | None = None  # rows_removed, files_rewritten, models_flagged, rows_left

    @property
    def clean(self) -> bool:
        """Whether the snapshot holds no guarded subject now (after `--fix`, if given)."""
        return (self.fixed["rows_left"] if self.fixed is not None else self.found.rows) == 0

    def to_json(self) -> dict[str, Any]:
        """For `--json`: the findings (before any fix), then what the fix did; `clean` is the verdict."""
        return {"snapshot": self.snapshot, "clean": self.clean, **self.found.to_json()} | (
            {"fixed": self.fixed} if self.fixed is not None else {})


class Readable(Protocol):
    """What the guard reads: a snapshot folder (SnapshotFolder), or a vector system's table."""

    skipped: list[dict[str, Any]]

    def files(self) -> list[str]: ...

    def where_values(self, rel: str) -> Iterator[WhereBatch]: ...

    def erase_many(self, subjects: Sequence[Subject]) -> list[Outcome]: ...


class VectorTable:
    """A vector system's table as the guard reads it: one part, the table, whose rows are erased
    subject by subject by the vector connector (each erase compacts: a gate, not a bulk path)."""

    def __init__(self, config: VectorConfig) -> None:
        self.connector = VectorConnector(config)
        self.skipped: list[dict[str, Any]] = []

    def files(self) -> list[str]:
        """The table, as the one part read."""
        return [self.connector.config.table]

    def where_values(self, rel: str) -> Iterator[WhereBatch]:
        """Every row's where values, as compared."""
        return self.connector.where_values()

    def erase_many(self, subjects: Sequence[Subject]) -> list[Outcome]:
        """Erase each subject from the table."""
        return [self.connector.erase(subject) for subject in subjects]

    def __enter__(self) -> VectorTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.connector.close()


def reader(config: SnapshotConfig | VectorConfig, folder: str) -> SnapshotFolder | VectorTable:
    """The snapshot folder, or the vector table, to read."""
    return VectorTable(config) if isinstance(config, VectorConfig) else SnapshotFolder(config, folder)


def parse_snapshot(rt: Runtime, snapshot: str) -> tuple[SnapshotConfig | VectorConfig, str]:
    """SYSTEM:SNAPSHOT naming a snapshot folder of a configured snapshot system (not a Delta table), or
    SYSTEM:TABLE naming a vector system and its table."""
    system, sep, folder = snapshot.partition(":")
    if not sep or not lineage.FOLDER.fullmatch(folder) or folder in (".", ".."):
        raise InputError(f"{snapshot[:80]!r}: write it as SYSTEM:SNAPSHOT, e.g. clickstream:2026-11-01")
    config = next((s for s in rt.config.systems if s.name == system), None)
    if isinstance(config, VectorConfig):
        if folder != config.table:
            raise InputError(f"{snapshot[:80]!r}: a vector system's snapshot is its table: {system}:{config.table}")
        return config, folder
    if not isinstance(config, SnapshotConfig):
        raise InputError(f"{snapshot[:80]!r}: {system!r} is not a snapshot or vector system of {rt.config.path}")
    if config.format == "delta":
        raise InputError(f"{snapshot[:80]!r}: {system} is a Delta table, whose versions the guard does not check "
                         "(it checks snapshot folders of Parquet, JSON lines or CSV files)")
    return config, folder


def guard_for(rt: Runtime) -> tuple[Guard, Owners]:
    """The store's guard list as a Guard, and whose each digest is."""
    guard_list.backfill(rt)
    owners = guard_list.entries(rt)
    folds = {name: kind.fold for name, kind in rt.config.identifiers.items()}
    return Guard(rt.keyring.guard_key(), {t: owners.get(t, {}).keys() for t in {*folds, *owners}}, folds), owners


def screen(rt: Runtime) -> Callable[[str], Scan | None]:
    """What `erasure lineage add` checks each snapshot with: its guarded rows (None for a snapshot the
    guard cannot read: a Delta table's, or a folder with no files, or gone), the guard list read once,
    at the first snapshot (after the command's input is checked)."""
    loaded: list[tuple[Guard, Owners]] = []

    def found_in(snapshot: str) -> Scan | None:
        if not loaded:
            loaded.append(guard_for(rt))
        guard, owners = loaded[0]
        system, _, folder = snapshot.partition(":")
        config = next((s for s in rt.config.systems if s.name == system), None)
        if isinstance(config, VectorConfig):
            with VectorTable(config) as table:
                return scan(table, guard, owners, table.files())
        if not isinstance(config, SnapshotConfig) or config.format == "delta":
            return None
        with SnapshotFolder(config, folder) as connector:
            if not connector.location.exists():
                return None
            files = connector.files()
            return scan(connector, guard, owners, files) if files else None

    return found_in


def check(rt: Runtime, snapshot: str, fix: bool = False) -> Checked:
    """Count the rows of guarded subjects in one snapshot; with `fix`, erase them, flag the model
    versions trained on it and audit it."""
    config, folder = parse_snapshot(rt, snapshot)
    guard, owners = guard_for(rt)
    with reader(config, folder) as connector:
        files = connector.files()
        if not files:
            raise InputError(f"{snapshot[:80]!r}: no {getattr(config, 'format', '')} files in that snapshot folder")
        found = scan(connector, guard, owners, files)
        log.info("guard.checked", system=config.name, snapshot=snapshot, files=found.files_checked, rows=found.rows)
        if not fix or not found.rows:
            return Checked(snapshot, found)
        subjects = list(found.subjects.values())
        with redact.values(v for s in subjects for v in s.all_values()):
            outcomes = every_one(connector.erase_many(subjects))
        left = scan(connector, guard, owners, connector.files())
    rewritten = sorted({f["file"] for o in outcomes for f in o.evidence.get("files", ())})
    removed = found.rows - left.rows  # every row the pass removed held a guarded value: see above
    with rt.transaction() as session:
        flagged = lineage.flag_snapshot(rt, session, snapshot, found.requests)
        versions = [{"model": m, "version": v} for m, v in sorted({(f.model, f.version) for f in flagged})]
        audit.record(session, "guard.fixed", None, config.name, snapshot=snapshot, rows_removed=removed,
                     rows_left=left.rows, files_rewritten=len(rewritten), requests=len(found.requests),
                     models_flagged=len(versions), types={t: v["rows"] for t, v in found.to_json()["types"].items()})
    log.warning("guard.fixed", system=config.name, snapshot=snapshot, rows_removed=removed, rows_left=left.rows,
                files_rewritten=len(rewritten), models_flagged=len(versions))
    return Checked(snapshot, found, {"rows_removed": removed, "files_rewritten": rewritten,
                                     "models_flagged": versions, "rows_left": left.rows})


def scan(connector: Readable, guard: Guard, owners: Owners, files: list[str]) -> Scan:
    """Read each of the folder's files once, batch by batch, for rows holding a guarded value."""
    found = Scan()
    connector.skipped.clear()
    if not any(owners.values()):
        found.files_checked = len(files)
        return found  # nobody is guarded: no file needs reading
    for rel in files:
        of_file = Scan()
        for batch in connector.where_values(rel):
            _batch(batch, guard, owners, of_file)
        if not any(entry["file"] == rel for entry in connector.skipped):
            found.take_in(rel, of_file)  # else it lacks a where column, and is skipped: the connector leaves it too
    found.skipped = list(connector.skipped)
    return found


def _batch(batch: WhereBatch, guard: Guard, owners: Owners, found: Scan) -> None:
    """Count one batch's rows holding a guarded value, and keep their digests, requests and subjects."""
    hits: dict[int, dict[str, set[str]]] = {}  # row -> type -> its guarded values, as compared
    for column in batch.columns:
        id_type = column.key.id_type
        at = pc.indices_nonzero(guard.contains(column.texts, type=id_type))
        if not len(at):
            continue
        rows = at if column.rows is None else column.rows.take(at)
        for row, text in zip(rows.to_pylist(), column.texts.take(at).to_pylist(), strict=True):
            hits.setdefault(row, {}).setdefault(id_type, set()).add(text)
            digest = guard.digest(text, type=id_type)
            found.values.setdefault(id_type, set()).add(digest)
            if (request_id := owners.get(id_type, {}).get(digest)) is not None:
                found.requests.add(request_id)
    if not hits:
        return
    found.rows += len(hits)
    found.types.update(t for kinds in hits.values() for t in kinds)
    held = _held(batch, sorted(hits))
    for row, guarded in hits.items():
        # of a type with a guarded value, those alone: a subject then matches no row without one
        identifiers = {t: tuple(sorted(guarded.get(t) or values)) for t, values in held[row].items()}
        key = tuple(sorted(identifiers.items()))
        found.subjects.setdefault(key, Subject(dict(key)))


def _held(batch: WhereBatch, rows: list[int]) -> dict[int, dict[str, set[str]]]:
    """Every value (as compared) each of these rows holds, by type."""
    held: dict[int, dict[str, set[str]]] = {row: {} for row in rows}
    wanted = pa.array(rows, pa.int64())
    for column in batch.columns:
        if column.rows is None:
            pairs = zip(rows, column.texts.take(wanted).to_pylist(), strict=True)
        else:
            inside = pc.is_in(column.rows, value_set=wanted)
            pairs = zip(column.rows.filter(inside).to_pylist(), column.texts.filter(inside).to_pylist(), strict=True)
        for row, text in pairs:
            if text is not None:
                held[row].setdefault(column.key.id_type, set()).add(text)
    return held
