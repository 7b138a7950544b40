"""The guard list: every completed request's identifier values as keyed hashes, so that a training
pipeline can keep the person out of the next model (`erasure guard export`, worker/guard.py) and a
snapshot can be checked for them (`erasure guard check`, worker.engine.guard_check).

Each value of each type (as intake normalized it; resolved ones too) is written as the hex
HMAC-SHA256, under the guard key (derived from the subject key: worker.keys), of `TYPE \\0 VALUE`,
in the transaction that completes the request. The values themselves are never written: a digest
tells nothing without the key, and the same value always gives the same digest, so each is kept
once (the request that first brought it)."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.base import Subject
from worker import keys
from worker.errors import InputError
from worker.runtime import Runtime
from worker.store.models import GuardEntry, Request, RequestStatus, Suppression, utcnow

log = structlog.get_logger("erasure.guard")
FORMAT = 1  # of the exported file: worker.guard.FORMAT reads it
CHUNK = 1000  # rows per INSERT: 4 parameters each, well within SQLite's and PostgreSQL's limits


def digest(key: bytes, id_type: str, value: str) -> str:
    """The hex digest of one normalized value of one type (worker.guard computes the same)."""
    return hmac.digest(key, f"{id_type}\0{value}".encode("utf-8", "surrogatepass"), "sha256").hex()


def add(rt: Runtime, session: Session, requests: Sequence[Request]) -> int:
    """Write the digests of these completed requests' identifiers (theirs while they still hold them),
    each (type, digest) once, in one statement per thousand; how many rows were offered."""
    found = [(r.id, rt.subject(r)) for r in requests
             if r.status == RequestStatus.COMPLETED and r.sealed_identifiers is not None]
    return _write(rt, session, found)


def _write(rt: Runtime, session: Session, subjects: Iterable[tuple[str, Subject]]) -> int:
    key, now = rt.keyring.guard_key(), utcnow()
    rows: dict[tuple[str, str], str] = {}
    for request_id, subject in subjects:
        for id_type, values in subject.identifiers.items():
            for value in values:
                rows.setdefault((id_type, digest(key, id_type, value)), request_id)
    if not rows:
        return 0
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    ordered = sorted(rows.items())  # one order for every writer: concurrent inserts never deadlock
    for start in range(0, len(ordered), CHUNK):
        chunk = [{"id_type": t, "digest": d, "request_id": r, "added_at": now} for (t, d), r in
                 ordered[start:start + CHUNK]]
        session.execute(dialect.insert(GuardEntry).values(chunk)
                        .on_conflict_do_nothing(index_elements=["id_type", "digest"]))
    return len(rows)


def backfill(rt: Runtime) -> int:
    """Add the requests completed before the guard list existed, from their suppression entries (the
    identifiers a completed request keeps for replay); how many entries were read."""
    with rt.transaction() as session:
        missing = session.scalars(select(Suppression).where(~exists().where(
            GuardEntry.request_id == Suppression.request_id))).all()
        if missing:
            _write(rt, session, [(e.request_id, Subject.from_json(
                rt.keyring.open(keys.SUPPRESSION, e.request_id, e.sealed))) for e in missing])
    if missing:
        log.info("guard.backfilled", requests=len(missing))
    return len(missing)


def entries(rt: Runtime) -> dict[str, dict[bytes, str]]:
    """Every digest in the store by type, with the request that brought it."""
    found: dict[str, dict[bytes, str]] = {}
    with rt.transaction() as session:
        for id_type, hexed, request_id in session.execute(
                select(GuardEntry.id_type, GuardEntry.digest, GuardEntry.request_id)):
            found.setdefault(id_type, {})[bytes.fromhex(hexed)] = request_id
    return found


@dataclass(frozen=True)
class Exported:
    """What `erasure guard export` wrote."""

    path: Path
    key_id: str
    counts: dict[str, int]

    def show(self) -> str:
        """One line for people."""
        counts = ", ".join(f"{t} {n}" for t, n in self.counts.items()) or "none"
        return f"guard list written to {self.path} (key {self.key_id}): {counts}"


def export(rt: Runtime, path: str | Path) -> Exported:
    """Write the portable guard list (mode 0600): each type's sorted digests and fold, the key's id."""
    out = Path(path)
    if out.is_dir():
        raise InputError(f"--out {out}: a folder; name the file to write")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: no folder {out.parent}")
    backfill(rt)
    types: dict[str, list[str]] = {name: [] for name in rt.config.identifiers}
    with rt.transaction() as session:
        for id_type, hexed in session.execute(select(GuardEntry.id_type, GuardEntry.digest)
                                              .order_by(GuardEntry.id_type, GuardEntry.digest)):
            types.setdefault(id_type, []).append(hexed)
    folds = {name: list(kind.fold) for name, kind in rt.config.identifiers.items() if name in types}
    document: dict[str, Any] = {
        "format": FORMAT, "key_id": rt.keyring.guard_key_id,
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "types": dict(sorted(types.items())), "folds": dict(sorted(folds.items())),
    }
    _write_private(out, json.dumps(document, separators=(",", ":")) + "\n")
    counts = {t: len(d) for t, d in sorted(types.items())}
    log.info("guard.exported", path=str(out), key_id=document["key_id"], digests=counts)
    return Exported(out, document["key_id"], counts)


def _write_private(path: Path, text: str) -> None:
    """Write the file whole beside, mode 0600, then swap it in: a reader never sees half of one, and a
    file that was there, whatever its mode, is replaced by one only its owner reads."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(draft, 0o600)  # O_CREAT's mode does not apply to a leftover draft
        os.replace(draft, path)
    except OSError as exc:
        draft.unlink(missing_ok=True)
        raise InputError(f"--out {path}: cannot write: {exc.strerror}") from None
