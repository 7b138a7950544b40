"""`erasure locate`, `submit --dry-run`, `POST /v1/locate` and the DPO page's preview: what an erasure
of a subject would take in each system now, and which model versions it would flag, changing nothing.

The subject is validated as intake validates it, the resolvers run (they only read), and the scope limits
the systems as a request's would. Each system is asked through its connector's read path
(`Connector.preview`: the erase's own matching, counted), so what it reports is what erase() would take;
a kind that cannot look without acting says so. The model versions are those `flags.due_flags` would flag
from the snapshots found and the lineage, nothing written. Nothing is recorded but one audit event,
`subject.located`, with the subject's keyed ref and counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select

from connectors import redact
from connectors.base import Preview, Subject, SystemConfig
from worker.engine import audit, fanout, flags, intake
from worker.errors import NoSuchRequest, PermanentError, RefusedError, TransientError, one_line
from worker.runtime import Runtime
from worker.store.models import Lineage, Request, RequestStatus, Scope, utcnow
from worker.store.models import SnapshotHit as StoredHit

log = structlog.get_logger("erasure.locate")
OPEN = (RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS)


@dataclass(frozen=True)
class SystemLook:
    """One system's answer: its preview, or why it was not asked (skipped, retained) or could not answer."""

    system: str
    kind: str
    preview: Preview | None = None
    note: str | None = None
    error: str | None = None

    @property
    def looked(self) -> bool:
        """Whether the system was looked at and answered with counts."""
        return self.preview is not None and self.preview.looked

    def to_json(self) -> dict[str, Any]:
        """As `locate --json` prints it: counts and templates, never a value."""
        preview = self.preview if self.looked else None
        return {"system": self.system, "kind": self.kind, "looked": self.looked,
                "items": preview.items if preview else None, "counts": dict(preview.counts) if preview else {},
                "note": self.note or (self.preview.note if self.preview else None), "error": self.error}


@dataclass(frozen=True)
class Located:
    """What an erasure of one subject would take, system by system, and the model versions it would flag."""

    subject_ref: str
    scope: str
    identifier_types: dict[str, int]
    systems: list[SystemLook]
    models: list[dict[str, Any]] = field(default_factory=list)

    @property
    def items(self) -> int:
        """The items of every system that looked."""
        return sum(look.preview.items for look in self.systems if look.looked and look.preview)

    def to_json(self) -> dict[str, Any]:
        """The `locate --json` object."""
        return {"subject_ref": self.subject_ref, "scope": self.scope, "identifier_types": self.identifier_types,
                "items": self.items, "systems": [look.to_json() for look in self.systems], "models": self.models}


def locate(rt: Runtime, subject: Any, scope: Any = None) -> Located:
    """Validate a subject as intake does and find what its erasure would take; InputError on bad input."""
    clean = intake.clean_subject(rt.config, subject)
    chosen = intake.clean_scope(scope)
    with redact.values(clean.all_values()):
        systems, skipped = intake.applicable(rt.config, clean, chosen)
        return _locate(rt, clean, chosen, rt.subject_ref(clean.to_json()), systems, skipped, None)


def locate_request(rt: Runtime, request_id: str) -> Located:
    """What the erasure of a received or in-progress request would take now, from its sealed identifiers."""
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        if request.status not in OPEN:
            raise RefusedError(f"request {request_id} is {request.status}: a preview is for a request not yet done")
        subject, scope, ref = rt.subject(request), Scope(request.scope), request.subject_ref
    with redact.values(subject.all_values()):
        systems, skipped = intake.applicable(rt.config, subject, scope)
        return _locate(rt, subject, scope, ref, systems, skipped, request_id)


def _locate(rt: Runtime, clean: Subject, scope: Scope, ref: str, systems: Sequence[SystemConfig],
            skipped: set[str], request_id: str | None) -> Located:
    """Resolve, ask each system, find the models, and record the one audit event."""
    subject = fanout.resolve(rt, request_id, clean) if rt.config.resolvers else clean
    with redact.values(subject.all_values()):
        now = utcnow()
        looks = [_look(rt, system, subject, system.name in skipped, now) for system in systems]
        located = Located(ref, str(scope), {k: len(v) for k, v in sorted(subject.identifiers.items())}, looks,
                          would_flag(rt, looks))
        with rt.transaction() as session:
            audit.record(session, "subject.located", request_id, subject_ref=ref, scope=str(scope),
                         items={look.system: look.preview.items for look in looks if look.looked and look.preview},
                         not_looked=sorted(look.system for look in looks if not look.looked) or None,
                         models=len(located.models))
        log.info("subject.located", request_id=request_id, subject_ref=ref, scope=str(scope), systems=len(looks),
                 items=located.items, models=len(located.models))
    return located


def _look(rt: Runtime, system: SystemConfig, subject: Subject, skipped: bool, now: datetime) -> SystemLook:
    """One system's preview, or why there is none."""
    if skipped:
        return SystemLook(system.name, system.kind, note=f"skipped: scope: {Scope.TRAINING}")
    if system.retain and system.retain.holds(now):
        return SystemLook(system.name, system.kind, note=system.retain.describe())
    problem = system.problem_with(subject)
    if problem:
        return SystemLook(system.name, system.kind, error=problem)
    try:
        return SystemLook(system.name, system.kind, rt.connector(system.name).preview(subject))
    except (TransientError, PermanentError) as exc:
        error = one_line(exc)
    except Exception as exc:  # a bug in a connector: this system answers nothing, the others still do
        error = f"internal error ({type(exc).__name__})"
    log.warning("subject.locate_failed", system=system.name, kind=system.kind, error=error)
    return SystemLook(system.name, system.kind, error=error)


def would_flag(rt: Runtime, looks: Sequence[SystemLook]) -> list[dict[str, Any]]:
    """The model versions `flags.due_flags` would flag for the snapshots found (none rewritten yet), from
    the lineage recorded; nothing is written."""
    hits = [StoredHit(request_id="", system=look.system, snapshot=hit.snapshot, rows=hit.rows, files=list(hit.files))
            for look in looks if look.preview for hit in look.preview.snapshots if hit.rows]
    if not hits:
        return []
    with rt.transaction() as session:
        lineage = session.scalars(select(Lineage).where(Lineage.snapshot.in_({hit.snapshot for hit in hits}))).all()
    due = flags.due_flags(hits, lineage, {})
    return [{"model": model, "version": version, "snapshots": sorted({hit.snapshot for hit in found})}
            for (_, model, version), found in sorted(due.items())]
