"""Manual systems' tasks. A system of kind `manual` is erased by a person: fan-out sends it no message
and the reconciler never re-sends it, so it stays `pending`, an open task, until a person settles it,
done (items and evidence) or not found. That outcome is recorded as every other is (outcomes.erased,
in the transaction that holds the request's row, settling the request if it was its last system).
Showing the subject's identifiers to that person is audited, by whom; a task whose request is due
within `[worker] task_reminder_days` is warned of once."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from connectors.base import Outcome, Subject
from connectors.manual.config import ManualConfig
from worker.config import Config
from worker.engine import audit, outcomes, settle
from worker.engine.flags import BIDI_CONTROLS, REASON_LIMIT
from worker.engine.state import move_system
from worker.errors import InputError, NoSuchRequest, RefusedError
from worker.runtime import Runtime
from worker.store.models import AuditEvent, Request, RequestStatus, SystemStatus, SystemTask, utcnow

log = structlog.get_logger("erasure.tasks")
STARTED = (RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED, RequestStatus.FAILED)  # received: still resolving
BY_LIMIT = 100
LIST_LIMIT = 1000
BATCH = 500
DUE_SOON = "task.due_soon"  # the warning, and the audit event that remembers it was given


@dataclass(frozen=True)
class OpenTask:
    """A manual system of a started request, waiting for a person."""

    request_id: str
    system: str
    received_at: datetime
    deadline: datetime
    identifier_types: tuple[str, ...]  # what the person looks the subject up by (never the values)
    instructions: str

    def to_json(self, now: datetime) -> dict[str, Any]:
        """As `erasure tasks --json` lists it."""
        return {"request_id": self.request_id, "system": self.system, "received_at": audit.stamp(self.received_at),
                "deadline": audit.stamp(self.deadline), "overdue": self.deadline < now,
                "identifier_types": list(self.identifier_types), "instructions": self.instructions}


def manual_systems(config: Config) -> dict[str, ManualConfig]:
    """The configured systems a person erases, by name."""
    return {s.name: s for s in config.systems if isinstance(s, ManualConfig)}


def is_manual(config: Config, system: str) -> bool:
    """Whether a system is one a person erases (the worker sends it no message)."""
    return system in manual_systems(config)


def open_tasks(rt: Runtime) -> list[OpenTask]:
    """Every open task, soonest deadline first (at most LIST_LIMIT)."""
    manual = manual_systems(rt.config)
    with rt.transaction() as session:
        rows = session.execute(
            select(SystemTask.request_id, SystemTask.system, Request.received_at, Request.deadline).join(Request)
            .where(SystemTask.status == SystemStatus.PENDING, SystemTask.system.in_(list(manual)),
                   Request.status.in_(STARTED))
            .order_by(Request.deadline, SystemTask.id).limit(LIST_LIMIT)
        ).all()
    return [OpenTask(r, s, received, deadline, manual[s].uses, manual[s].instructions)
            for r, s, received, deadline in rows]


def show(rt: Runtime, request_id: str, system: str) -> OpenTask:
    """One open task; NoSuchRequest, or InputError / RefusedError saying why it is none."""
    with rt.transaction() as session:
        request, _, config = _open(rt, session, request_id, system, lock=False)
        return OpenTask(request.id, system, request.received_at, request.deadline, config.uses, config.instructions)


def reveal(rt: Runtime, request_id: str, system: str, by: str) -> dict[str, tuple[str, ...]]:
    """The subject's identifiers of the types the task's system is looked up by, for the person doing
    it; the audit trail records who asked (never the values), in the transaction that reads them."""
    by = _line("by", by, BY_LIMIT)
    with rt.transaction() as session:
        request, _, config = _open(rt, session, request_id, system, lock=False)
        if request.sealed_identifiers is None:
            raise RefusedError(f"request {request_id} holds no identifiers any more (dropped once it completed): "
                               "there is nothing to reveal")
        subject = rt.subject(request)
        _refuse_values("by", by, subject)
        shown = {t: subject.values(t) for t in config.uses if subject.values(t)}
        audit.record(session, "task.revealed", request_id, system, by=by, identifier_types=sorted(shown))
    log.info("task.revealed", request_id=request_id, system=system, by=by, identifier_types=sorted(shown))
    return shown


def done(rt: Runtime, request_id: str, system: str, items: int, evidence: str, by: str) -> str:
    """A person erased `items` items by hand: the system settles `erased`; the request's status after."""
    if isinstance(items, bool) or not isinstance(items, int) or not 1 <= items <= 10**9:
        raise InputError("items: how many items were erased, at least 1 (nothing found: use not-found)")
    return _settle(rt, request_id, system, items, evidence, by)


def not_found(rt: Runtime, request_id: str, system: str, evidence: str, by: str) -> str:
    """A person looked and found nothing: the system settles `not_found`; the request's status after."""
    return _settle(rt, request_id, system, 0, evidence, by)


def _settle(rt: Runtime, request_id: str, system: str, items: int, evidence: str, by: str) -> str:
    """Record a person's outcome as a pass records a connector's: the attempt taken and settled in one
    transaction holding the request's row, which settles too if this was its last system."""
    evidence, by = _line("evidence", evidence, REASON_LIMIT), _line("by", by, BY_LIMIT)
    event = "task.done" if items else "task.not_found"
    now, origin = utcnow(), outcomes.origin(rt, system)
    with rt.transaction() as session:
        request, task, _ = _open(rt, session, request_id, system, lock=True)
        if request.sealed_identifiers is not None:  # an open task's request still holds them
            subject = rt.subject(request)
            _refuse_values("evidence", evidence, subject)
            _refuse_values("by", by, subject)
        move_system(task, SystemStatus.RUNNING, attempts=task.attempts + 1, started_at=now, lease_until=None)
        by_hand = {"by": by, "evidence": evidence, "found": bool(items), "at": audit.stamp(now)}
        outcomes.erased(task, Outcome(items, {"manual": by_hand}), {"connector": origin, "by": by})
        audit.record(session, event, request_id, system, by=by, items=items)
        settle.settle_locked(rt, session, [request])
        status = request.status
    log.info(event, request_id=request_id, system=system, by=by, items=items, request_status=status)
    return status


def remind_due(rt: Runtime) -> int:
    """Warn `task.due_soon` once for each open task whose request is due within `task_reminder_days`
    (or overdue already); the audit event written with it remembers it was given. How many."""
    days, manual = rt.config.worker.task_reminder_days, manual_systems(rt.config)
    if not days or not manual:
        return 0
    now = utcnow()
    reminded = exists().where(AuditEvent.type == DUE_SOON, AuditEvent.request_id == SystemTask.request_id,
                              AuditEvent.system == SystemTask.system)
    with rt.transaction() as session:
        due = session.execute(
            select(SystemTask, Request.deadline).join(Request)
            .where(SystemTask.status == SystemStatus.PENDING, SystemTask.system.in_(list(manual)),
                   Request.status.in_(STARTED), Request.deadline < now + timedelta(days=days), ~reminded)
            .order_by(Request.deadline).limit(BATCH).with_for_update(of=SystemTask, skip_locked=True)
        ).all()
        for task, deadline in due:
            # logged before the commit: should the commit fail, the next pass warns again
            log.warning("task.due_soon", request_id=task.request_id, system=task.system,
                        deadline=audit.stamp(deadline), overdue=deadline < now)
            audit.record(session, DUE_SOON, task.request_id, task.system, deadline=audit.stamp(deadline))
    return len(due)


def _open(rt: Runtime, session: Session, request_id: str, system: str,
          lock: bool) -> tuple[Request, SystemTask, ManualConfig]:
    """The request, its task at the system and the system's config, if that task is open (rows locked
    when asked, the request's first, as passes lock them); else why not."""
    request = session.get(Request, request_id, with_for_update=lock)
    if request is None:
        raise NoSuchRequest(f"no request {request_id[:100]}")
    query = select(SystemTask).where(SystemTask.request_id == request_id, SystemTask.system == system)
    task = session.scalar(query.with_for_update() if lock else query)
    if task is None:
        names = ", ".join(t.system for t in request.systems)
        raise InputError(f"system: request {request_id} has no system {system[:100]!r} (it has {names})")
    config = manual_systems(rt.config).get(system)
    if config is None:
        raise RefusedError(f"system {system} of request {request_id} is a {task.kind} system, which the worker "
                           "erases: only a manual system has a task a person settles")
    if task.status != SystemStatus.PENDING:
        settled = " (settled)" if task.status in (SystemStatus.ERASED, SystemStatus.NOT_FOUND) else ""
        raise RefusedError(f"system {system} of request {request_id} is {task.status}{settled}: it is no open task")
    if request.status not in STARTED:
        raise RefusedError(f"request {request_id} is {request.status}: its task opens once it has started "
                           "(its identifiers resolved); try again in a moment")
    return request, task, config


def _line(name: str, text: Any, limit: int) -> str:
    """Text fit for the record (flags.check_reason's rule): one line, 1 to `limit` characters, trimmed."""
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise InputError(f"{name}: required, at most {limit} characters")
    if len(text) > limit:
        raise InputError(f"{name}: at most {limit} characters, got {len(text)}")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI_CONTROLS for c in text):
        raise InputError(f"{name}: one line of plain text, without control characters")
    return text


def _refuse_values(name: str, text: str, subject: Subject) -> None:
    """Refuse text that holds any of the subject's identifier values (compared folded): what is
    recorded here is kept for good, and a certificate must never name the person."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    for id_type, values in sorted(subject.identifiers.items()):
        if any(unicodedata.normalize("NFKC", value).casefold() in folded for value in values):
            raise InputError(f"{name}: it holds the subject's {id_type}; say what was done without it "
                             "(the record is kept for good)")
