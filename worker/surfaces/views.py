"""The read side: a request as the status JSON of the contract, and lists of them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from worker.engine import deadlines
from worker.engine.state import nothing_found
from worker.errors import InputError, NoSuchRequest
from worker.runtime import Runtime
from worker.store.models import Lineage, ModelFlag, Request, RequestStatus, Scope, SnapshotHit, utcnow

LIST_LIMIT = 1000


def timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the contract writes times."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def files_by_request(session: Session, request_ids: Iterable[str] | Select[Any]) -> dict[str, dict[str, list[str]]]:
    """The files that held each request's subject, by request and snapshot."""
    found: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for hit in session.scalars(select(SnapshotHit).where(SnapshotHit.request_id.in_(request_ids))):
        found[hit.request_id][hit.snapshot] = sorted(hit.files)
    return found


def flag_json(flag: ModelFlag, files: Mapping[str, list[str]]) -> dict[str, Any]:
    """One flag: the snapshots that caused it, the files of each (to retrain only those shards),
    and where it stands."""
    return {
        "snapshots": flag.snapshots, "files": {s: files.get(s, []) for s in flag.snapshots},
        "state": flag.state, "reason": flag.reason,
        "flagged_at": timestamp(flag.flagged_at), "changed_at": timestamp(flag.changed_at),
    }


def request_json(request: Request, flags: list[ModelFlag], files: Mapping[str, list[str]]) -> dict[str, Any]:
    """One request in the contract's status shape; `flags` adds the files and state of each flag
    (`flagged_models` keeps the contract's three fields, which the acceptance suite compares whole),
    `nothing_found` whether it completed with every system not_found (worker.engine.state.nothing_found)."""
    flags = sorted(flags, key=lambda f: (f.model, f.version))
    return {
        "request_id": request.id,
        "status": request.status,
        "scope": request.scope,
        "nothing_found": nothing_found(request),
        "received_at": timestamp(request.received_at),
        "deadline": timestamp(request.deadline),
        "overdue": deadlines.is_overdue(request, utcnow()),
        "extended": None if request.extended_at is None else {
            "months": request.extended_months, "reason": request.extended_reason,
            "at": timestamp(request.extended_at), "original_deadline": timestamp(request.original_deadline),
        },
        "completed_at": timestamp(request.completed_at),
        "subject_ref": request.subject_ref,
        "requested_by": request.requested_by,
        "error": request.error,
        "systems": [
            {
                "system": t.system, "kind": t.kind, "status": t.status, "attempts": t.attempts,
                "items_erased": t.items_erased, "error": t.error, "reason": t.reason,
                "finished_at": timestamp(t.finished_at),
            }
            for t in request.systems
        ],
        "flagged_models": [{"model": f.model, "version": f.version, "snapshots": f.snapshots} for f in flags],
        "flags": [{"model": f.model, "version": f.version, **flag_json(f, files)} for f in flags],
    }


def status(rt: Runtime, request_id: str) -> dict[str, Any]:
    """The status object of one request (NoSuchRequest if unknown)."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, options=[selectinload(Request.systems)])
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        flags = list(session.scalars(select(ModelFlag).where(ModelFlag.request_id == request_id)))
        files = files_by_request(session, [request_id]) if flags else {}
        return request_json(request, flags, files.get(request_id, {}))


def evidence(rt: Runtime, request_id: str) -> dict[str, Any]:
    """Each system's evidence for one request, by system name."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, options=[selectinload(Request.systems)])
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        return {t.system: t.evidence for t in request.systems}


def listing(rt: Runtime, status: str | None = None, overdue: bool = False, *, statuses: Sequence[str] = (),
            by_deadline: bool = False, limit: int | None = None, scope: str | None = None) -> list[dict[str, Any]]:
    """Requests, newest first (or soonest deadline first), optionally by status (or any of `statuses`),
    past their deadline and not completed, or of one scope; at most `limit` (LIST_LIMIT)."""
    if status is not None and status not in set(RequestStatus):
        raise InputError(f"--status: one of {', '.join(RequestStatus)}")
    if scope is not None and scope not in set(Scope):
        raise InputError(f"--scope: one of {', '.join(Scope)}")
    query = select(Request).options(selectinload(Request.systems))
    chosen = [status] if status is not None else list(statuses)
    if chosen:
        query = query.where(Request.status.in_(chosen))
    if scope is not None:
        query = query.where(Request.scope == scope)
    if overdue:
        query = query.where(deadlines.overdue(utcnow()))
    order = (Request.deadline, Request.id) if by_deadline else (Request.received_at.desc(), Request.id.desc())
    query = query.order_by(*order).limit(LIST_LIMIT if limit is None else limit)
    with rt.transaction() as session:
        requests = session.scalars(query).all()
        ids = [r.id for r in requests]
        flags: dict[str, list[ModelFlag]] = {}
        for flag in session.scalars(select(ModelFlag).where(ModelFlag.request_id.in_(ids))) if ids else []:
            flags.setdefault(flag.request_id, []).append(flag)
        files = files_by_request(session, list(flags)) if flags else {}
        return [request_json(r, flags.get(r.id, []), files.get(r.id, {})) for r in requests]


def models(rt: Runtime, flagged_only: bool) -> list[dict[str, Any]]:
    """Model versions with their flags (and each flag's history), as `erasure models --json` prints them."""
    with rt.transaction() as session:
        versions = session.execute(select(Lineage.model, Lineage.version).distinct()).all()
        found = session.scalars(select(ModelFlag).options(selectinload(ModelFlag.events))
                                .order_by(ModelFlag.flagged_at, ModelFlag.id)).all()
        files = files_by_request(session, select(ModelFlag.request_id))
    by_version: dict[tuple[str, str], list[dict[str, Any]]] = {(m, v): [] for m, v in versions}
    for flag in found:
        by_version.setdefault((flag.model, flag.version), []).append({
            "request_id": flag.request_id, **flag_json(flag, files.get(flag.request_id, {})),
            "history": [{"from": e.from_state, "to": e.to_state, "reason": e.reason, "at": timestamp(e.at)}
                        for e in flag.events],
        })
    return [
        {"model": model, "version": version, "flags": flagged}
        for (model, version), flagged in sorted(by_version.items())
        if flagged or not flagged_only
    ]
