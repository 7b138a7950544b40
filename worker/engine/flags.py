"""Model flags: the one rule that says which model versions are flagged for which requests
(applied when a request settles and when lineage is added), and a flag's life after that:
open, acknowledged, then retrained or waived for good, each change recorded with its reason."""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import structlog
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from worker.engine import audit
from worker.errors import InputError, RefusedError
from worker.runtime import Runtime
from worker.store.models import (
    FlagEvent,
    FlagState,
    Lineage,
    ModelFlag,
    Request,
    SnapshotHit,
    SystemStatus,
    SystemTask,
    utcnow,
)

log = structlog.get_logger("erasure.flags")

F = FlagState
MOVES: dict[str, frozenset[str]] = {
    F.OPEN: frozenset({F.ACKNOWLEDGED, F.WAIVED}),
    F.ACKNOWLEDGED: frozenset({F.RETRAINED, F.WAIVED}),
    F.RETRAINED: frozenset(),
    F.WAIVED: frozenset(),
}
FINAL = frozenset(state for state, moves in MOVES.items() if not moves)
REASON_LIMIT = 500
# characters that reorder how the text around them is shown (a record must read as it is stored)
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

Due = dict[tuple[str, str, str], list[SnapshotHit]]


def due_flags(hits: Iterable[SnapshotHit], lineage: Iterable[Lineage],
              rewritten_at: Mapping[tuple[str, str], datetime]) -> Due:
    """The (request, model, version) triples to flag, each with the hits that cause it: a version
    trained on a snapshot that held the subject, unless its training started after that snapshot's
    system was rewritten without them (`rewritten_at` by (request, system); absent: never was)."""
    trained_on: dict[str, list[Lineage]] = defaultdict(list)
    for row in lineage:
        trained_on[row.snapshot].append(row)
    due: Due = defaultdict(list)
    for hit in hits:
        clean_since = rewritten_at.get((hit.request_id, hit.system))
        for row in trained_on.get(hit.snapshot, ()):
            if hit.rows > 0 and (clean_since is None or row.trained_at <= clean_since):
                due[(hit.request_id, row.model, row.version)].append(hit)
    return dict(due)


def raise_flags(session: Session, requests: Sequence[Request],
                versions: set[tuple[str, str]] | None = None) -> list[ModelFlag]:
    """Flag what `due_flags` says for these requests (for these model versions only, if given).
    A flag raised before keeps its state, and takes in newly due snapshots unless it is final."""
    by_id = {r.id: r for r in requests}
    if not by_id:
        return []
    hits = session.scalars(select(SnapshotHit).where(SnapshotHit.request_id.in_(by_id), SnapshotHit.rows > 0)).all()
    if not hits:
        return []
    lineage = [row for row in session.scalars(select(Lineage).where(Lineage.snapshot.in_({h.snapshot for h in hits})))
               if versions is None or (row.model, row.version) in versions]
    erased = session.execute(
        select(SystemTask.request_id, SystemTask.system, SystemTask.finished_at)
        .where(SystemTask.request_id.in_(by_id), SystemTask.status == SystemStatus.ERASED)
    ).all()
    due = due_flags(hits, lineage, {(r, s): at for r, s, at in erased if at is not None})
    earlier = session.scalars(select(ModelFlag).where(ModelFlag.request_id.in_(by_id)))
    known = {(f.request_id, f.model, f.version): f for f in earlier}
    flags = []
    for (request_id, model, version), found in sorted(due.items()):
        snapshots = sorted({hit.snapshot for hit in found})
        flag = known.get((request_id, model, version))
        if flag is None:
            flag = ModelFlag(model=model, version=version, request_id=request_id, snapshots=snapshots,
                             state=F.OPEN, flagged_at=utcnow())
            session.add(flag)
            log.warning("model.flagged", request_id=request_id, subject_ref=by_id[request_id].subject_ref,
                        model=model, version=version, snapshots=snapshots)
            audit.record(session, "model.flagged", request_id, model=model, version=version, snapshots=snapshots)
        elif flag.state not in FINAL and not set(snapshots) <= set(flag.snapshots):
            flag.snapshots = sorted(set(flag.snapshots) | set(snapshots))
            flag.notified_at = flag.notify_after = None  # the platform is told again, of every snapshot
            log.warning("model.flag_widened", request_id=request_id, model=model, version=version,
                        snapshots=flag.snapshots, state=flag.state)
            audit.record(session, "model.flag_widened", request_id, model=model, version=version,
                         snapshots=flag.snapshots, state=flag.state)
        flags.append(flag)
    return flags


def flag_trained_on(session: Session, snapshot: str, request_ids: Iterable[str], reason: str,
                    versions: set[tuple[str, str]] | None = None) -> list[ModelFlag]:
    """Flag every model version trained on a snapshot (of these only, if given) for each of these
    requests, with the reason: a settled subject's rows found in it afterwards (the guard's check, or
    lineage recorded for a snapshot the guard finds them in). A flag raised before keeps its state,
    and takes in the snapshot unless it is final."""
    ids = sorted(set(request_ids))
    trained = session.execute(select(Lineage.model, Lineage.version).where(Lineage.snapshot == snapshot)
                              .distinct().order_by(Lineage.model, Lineage.version)).all()
    chosen = [(m, v) for m, v in trained if versions is None or (m, v) in versions]
    if not ids or not chosen:
        return []
    requests = {r.id: r for r in session.scalars(select(Request).where(Request.id.in_(ids)).order_by(Request.id)
                                                  .with_for_update())}
    known = {(f.request_id, f.model, f.version): f
             for f in session.scalars(select(ModelFlag).where(ModelFlag.request_id.in_(ids)))}
    flags = []
    for request_id in (i for i in ids if i in requests):
        for model, version in chosen:
            flag = known.get((request_id, model, version))
            if flag is None:
                flag = ModelFlag(model=model, version=version, request_id=request_id, snapshots=[snapshot],
                                 state=F.OPEN, flagged_at=utcnow(), reason=reason)
                session.add(flag)
                log.warning("model.flagged", request_id=request_id, subject_ref=requests[request_id].subject_ref,
                            model=model, version=version, snapshots=[snapshot], reason=reason)
                audit.record(session, "model.flagged", request_id, model=model, version=version,
                             snapshots=[snapshot], reason=reason)
            elif flag.state not in FINAL and snapshot not in flag.snapshots:
                flag.snapshots = sorted({*flag.snapshots, snapshot})
                flag.notified_at = flag.notify_after = None  # the platform is told again, of every snapshot
                log.warning("model.flag_widened", request_id=request_id, model=model, version=version,
                            snapshots=flag.snapshots, state=flag.state, reason=reason)
                audit.record(session, "model.flag_widened", request_id, model=model, version=version,
                             snapshots=flag.snapshots, state=flag.state, reason=reason)
            else:
                continue
            flags.append(flag)
    return flags


def tag_after_commit(rt: Runtime, session: Session, versions: Iterable[tuple[str, str]]) -> None:
    """Once this transaction commits, have a worker tag these flagged model versions in MLflow, if
    one is configured: never inside it, so an MLflow that is down cannot hold or fail an erasure."""
    wanted = sorted(set(versions))
    if not wanted or not rt.config.mlflow_tracking_uri:
        return

    def enqueue(_: Session) -> None:
        for model, version in wanted:
            try:
                rt.dispatch.tag(model, version)
            except Exception as exc:  # the flag is recorded; a lost tag must not fail what follows
                log.warning("mlflow.tag_failed", model=model, version=version, attempts=0, error=type(exc).__name__)

    event.listen(session, "after_commit", enqueue, once=True)


def check_reason(reason: str) -> str:
    """A reason fit for the record: one line of text, 1 to 500 characters, trimmed."""
    text = reason.strip()
    if not text:
        raise InputError(f"--reason: say why, in at most {REASON_LIMIT} characters")
    if len(text) > REASON_LIMIT:
        raise InputError(f"--reason: at most {REASON_LIMIT} characters, got {len(text)}")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI_CONTROLS for c in text):
        raise InputError("--reason: one line of plain text, without control characters")
    return text


def change(rt: Runtime, model: str, version: str, to: FlagState, reason: str,
           request_id: str | None = None, by: str | None = None) -> list[tuple[str, str]]:
    """Move every non-final flag of a model version (or only one request's) to `to`, recording why (and
    `by` whom, in the audit); returns (request_id, previous state) of each flag moved. Refused whole if
    any flag cannot move."""
    why = check_reason(reason)
    name = f"model {model[:100]!r} version {version[:100]!r}"
    of_request = "" if request_id is None else f" of request {request_id[:100]!r}"
    with rt.transaction() as session:
        flags = session.scalars(
            select(ModelFlag).where(ModelFlag.model == model, ModelFlag.version == version)
            .order_by(ModelFlag.id).with_for_update()
        ).all()
        if not flags:
            if session.scalar(select(Lineage.id).where(Lineage.model == model, Lineage.version == version)
                              .limit(1)) is None:
                raise InputError(f"no {name}: `erasure models` lists them")
            raise RefusedError(f"{name} has no flag")
        if request_id is not None:
            flags = [f for f in flags if f.request_id == request_id]
            if not flags:
                raise InputError(f"--request: {name} has no flag{of_request}")
        pending = [f for f in flags if f.state not in FINAL]
        if not pending:
            raise RefusedError(f"{name} has no open or acknowledged flag{of_request}: "
                               f"{', '.join(sorted({f.state for f in flags}))} are final")
        for flag in pending:
            if flag.state != to and to not in MOVES[flag.state]:
                hint = ": acknowledge it first" if (flag.state, to) == (F.OPEN, F.RETRAINED) else ""
                raise RefusedError(f"{name}: the flag of request {flag.request_id} is {flag.state}, "
                                   f"it cannot become {to}{hint}")
        moving = [f for f in pending if f.state != to]
        if not moving:
            raise RefusedError(f"{name}: every flag{of_request} that is not final is already {to}")
        now, moved = utcnow(), []
        for flag in moving:
            previous, flag.state, flag.reason, flag.changed_at = flag.state, to, why, now
            flag.events.append(FlagEvent(from_state=previous, to_state=to, reason=why, at=now))
            log.info(f"flag.{to}", model=model, version=version, request_id=flag.request_id, previous=previous)
            audit.record(session, f"flag.{to}", flag.request_id, model=model, version=version, previous=previous,
                         reason=why, by=by)
            moved.append((flag.request_id, previous))
        tag_after_commit(rt, session, [(model, version)])
        return moved
