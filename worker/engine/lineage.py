"""Lineage: which model versions were trained on which snapshots, and when. Adding it flags the
requests already settled whose subject those snapshots held, by the rule of `worker.engine.flags`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.config import Config
from worker.engine import flags
from worker.errors import ErasureError, InputError
from worker.runtime import Runtime
from worker.store.models import Lineage, ModelFlag, Request, RequestStatus, SnapshotHit, utcnow

log = structlog.get_logger("erasure.lineage")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+/@-]{0,99}")
FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+@-]{0,199}")
FUTURE_SLACK = timedelta(minutes=1)  # clocks of the training host and this one may differ a little
CHUNK = 500  # requests flagged per pass, to keep each IN (...) well within every database's limit
TRAINED_AFTER = "trained after the subject's request"  # why a guard check's find flags a model
TRAINING_DATA = ("snapshot", "vector")  # the kinds whose erasures report snapshot hits


def check_snapshot(config: Config, snapshot: str) -> str:
    """A `SYSTEM:FOLDER` id naming a snapshot system of the config, or `SYSTEM:TABLE` naming a vector
    system and its table (what its erasures report as the snapshot that held a subject)."""
    system, sep, folder = snapshot.partition(":")
    if not sep or not FOLDER.fullmatch(folder) or folder in (".", ".."):
        raise InputError(f"--snapshot {snapshot[:80]!r}: write it as SYSTEM:FOLDER, e.g. clickstream:2026-11-01")
    found = next((s for s in config.systems if s.name == system), None)
    if found is None or found.kind not in TRAINING_DATA:
        raise InputError(f"--snapshot {snapshot[:80]!r}: {system!r} is not a snapshot or vector system of this config")
    table = getattr(found, "table", None)
    if found.kind == "vector" and folder != table:
        raise InputError(f"--snapshot {snapshot[:80]!r}: a vector system's snapshot is its table: {system}:{table}")
    return snapshot


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as `--trained-at` takes it (the timezone is checked by `add`)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--trained-at {text[:40]!r}: write ISO 8601, e.g. 2026-11-01T09:30:00Z") from None


def check_trained_at(moment: datetime | None) -> datetime:
    """When training started, in UTC, default now; it must carry a timezone and not be in the future."""
    if moment is None:
        return utcnow()
    if moment.utcoffset() is None:
        raise InputError("--trained-at: give the timezone, e.g. 2026-11-01T09:30:00Z or +02:00")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise InputError("--trained-at: out of range") from None
    if moment > datetime.now(UTC) + FUTURE_SLACK:
        raise InputError("--trained-at: in the future")
    # the store keeps times to the second: rounding down compares with a rewrite's end on the safe side
    return moment.replace(microsecond=0)


class Found(Protocol):
    """What the guard found in one snapshot: rows of guarded subjects, and the requests they came from."""

    rows: int
    requests: set[str]


Screen = Callable[[str], Found | None]  # a snapshot's guarded rows; None: the guard cannot read it


class NotClean(ErasureError):
    """`--require-clean`: a snapshot holds guarded subjects (or cannot be checked); nothing recorded."""


@dataclass(frozen=True)
class Added:
    """What `add` recorded: how many snapshots were new, and those the guard found guarded rows in
    (snapshot -> rows), for which the version was flagged at once; `unchecked`: snapshots it cannot read."""

    new: int
    guarded: dict[str, int] = field(default_factory=dict)
    unchecked: tuple[str, ...] = ()


def add(rt: Runtime, model: str, version: str, snapshots: list[str], trained_at: datetime | None = None,
        screen: Screen | None = None, require_clean: bool = False) -> Added:
    """Record that a model version was trained on snapshots (training started at `trained_at`, default
    now). Settled requests whose subject a new snapshot held are flagged now; with `screen` (the guard),
    each new snapshot is checked too, and a version trained on one holding a guarded subject is flagged
    for that subject's request at once (`require_clean`: refused instead, and nothing is recorded)."""
    for label, value in (("--model", model), ("--version", version)):
        if not NAME.fullmatch(value):
            raise InputError(f"{label}: letters, digits and _.:+/@- only, at most 100 characters")
    if not snapshots:
        raise InputError("--snapshot: name at least one SYSTEM:FOLDER")
    wanted = {check_snapshot(rt.config, s) for s in snapshots}
    trained = check_trained_at(trained_at)
    with rt.transaction() as session:
        recorded = set(session.scalars(select(Lineage.snapshot).where(Lineage.model == model,
                                                                      Lineage.version == version)))
    found = {s: screen(s) for s in sorted(wanted - recorded)} if screen is not None else {}
    guarded = {s: hit for s, hit in found.items() if hit is not None and hit.rows}
    unchecked = tuple(s for s, hit in found.items() if hit is None)
    if require_clean and (guarded or unchecked or screen is None):
        raise NotClean(_not_clean(model, version, guarded, unchecked, screen is None))
    with rt.transaction() as session:
        known = set(session.scalars(select(Lineage.snapshot).where(Lineage.model == model,
                                                                   Lineage.version == version)))
        new, now = sorted(wanted - known), utcnow()
        for snapshot in new:
            session.add(Lineage(model=model, version=version, snapshot=snapshot, recorded_at=now, trained_at=trained))
        if new:
            _flag_settled(rt, session, model, version, new)
        raised = [flag for snapshot in new if snapshot in guarded for flag in flags.flag_trained_on(
            session, snapshot, guarded[snapshot].requests, TRAINED_AFTER, versions={(model, version)})]
        flags.tag_after_commit(rt, session, [(f.model, f.version) for f in raised])
    log.info("lineage.added", model=model, version=version, snapshots=sorted(wanted), new=len(new))
    for snapshot, hit in guarded.items():
        log.warning("lineage.guarded", model=model, version=version, snapshot=snapshot, rows=hit.rows,
                    requests=len(hit.requests))
    return Added(len(new), {s: hit.rows for s, hit in guarded.items() if s in new},
                 tuple(s for s in unchecked if s in new))


def _not_clean(model: str, version: str, guarded: dict[str, Found], unchecked: tuple[str, ...],
               unscreened: bool) -> str:
    """Why `--require-clean` refused, in one line (counts, never values)."""
    parts = [f"{s} holds {hit.rows} row(s) of guarded subjects" for s, hit in sorted(guarded.items())]
    parts += [f"{s} cannot be read by the guard (a Delta table, or no files there)" for s in unchecked]
    if unscreened:
        parts.append("no guard was given to check the snapshots")
    return (f"--require-clean: {model} {version} not recorded: {'; '.join(parts)}; "
            "`erasure guard check SYSTEM:SNAPSHOT --fix` removes them")


def _flag_settled(rt: Runtime, session: Session, model: str, version: str, snapshots: list[str]) -> None:
    """Flag the version for settled requests whose subject these snapshots held (the others are
    flagged when they settle). Each such request is locked first, so a settle running meanwhile
    either sees this lineage or is seen here as settled."""
    holders = select(SnapshotHit.request_id).where(SnapshotHit.snapshot.in_(snapshots), SnapshotHit.rows > 0)
    requests = session.scalars(select(Request).where(Request.id.in_(holders)).order_by(Request.id)
                               .with_for_update()).all()
    settled = [r for r in requests if r.status in (RequestStatus.COMPLETED, RequestStatus.FAILED)]
    raised = []
    for start in range(0, len(settled), CHUNK):
        raised += flags.raise_flags(session, settled[start:start + CHUNK], versions={(model, version)})
    flags.tag_after_commit(rt, session, [(f.model, f.version) for f in raised])


def flag_snapshot(rt: Runtime, session: Session, snapshot: str, request_ids: Iterable[str]) -> list[ModelFlag]:
    """Flag every model version already trained on a snapshot for these requests, whose subjects' rows
    were found in it after they settled (the guard's check); MLflow tags them after the commit."""
    raised = flags.flag_trained_on(session, snapshot, request_ids, TRAINED_AFTER)
    flags.tag_after_commit(rt, session, [(f.model, f.version) for f in raised])
    return raised


def flag_models(rt: Runtime, session: Session, requests: Sequence[Request]) -> list[ModelFlag]:
    """Flag every model version trained on a snapshot that held these requests' subjects, unless its
    training started after that snapshot was rewritten without them; MLflow tags them after the commit."""
    raised = flags.raise_flags(session, requests)
    flags.tag_after_commit(rt, session, [(f.model, f.version) for f in raised])
    return raised
