"""Intake: validate and normalize a request, dedupe it, record it with one row per
applicable system in one transaction, then enqueue it. Bad input records nothing. A request of
scope "training" (an objection to training use) records the systems not marked `training` as
skipped, there and then: they are never sent a message and never touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from connectors import redact
from connectors.base import Subject, SystemConfig
from worker import tracing
from worker.config import Config
from worker.engine import audit
from worker.engine.state import record_skipped
from worker.errors import ErasureError, InputError
from worker.runtime import Runtime
from worker.store.models import Request, RequestStatus, Scope, SystemStatus, SystemTask, utcnow

log = structlog.get_logger("erasure.intake")
MAX_TEXT = 200


@dataclass(frozen=True)
class Submitted:
    """What submit answers: the request, its status, and whether it was already known."""

    request_id: str
    status: str
    duplicate: bool

    def to_json(self) -> dict[str, Any]:
        """The contract's `submit --json` object."""
        return {"request_id": self.request_id, "status": self.status, "duplicate": self.duplicate}


class NotEnqueued(ErasureError):
    """The request was recorded, but the broker did not take the message."""


def parse_subject_args(pairs: Iterable[str]) -> dict[str, list[str]]:
    """`TYPE=VALUE` arguments as a mapping of type to values (not yet validated)."""
    found: dict[str, list[str]] = {}
    for pair in pairs:
        id_type, sep, value = pair.partition("=")
        if not sep or not id_type:
            raise InputError("--subject takes TYPE=VALUE, e.g. --subject email=someone@example.com")
        found.setdefault(id_type, []).append(value)
    return found


def clean_subject(config: Config, raw: Any) -> Subject:
    """Validate and normalize every identifier; InputError names the first problem."""
    if not isinstance(raw, Mapping) or not raw:
        raise InputError("subject: give at least one identifier, as a mapping of type to value(s)")
    cleaned: dict[str, set[str]] = {}
    for id_type, values in raw.items():
        if id_type not in config.identifiers:
            known = ", ".join(sorted(config.identifiers))
            # A key that is no plain name may be a value sent as a key: never echo it into logs.
            shown = repr(id_type) if isinstance(id_type, str) and id_type.isidentifier() and len(id_type) <= 40 \
                else "(not a plain name)"
            raise InputError(f"subject: unknown identifier type {shown} (known: {known})")
        listed = values if isinstance(values, list) else [values]
        if not listed:
            raise InputError(f"{id_type}: no value given")
        for value in listed:
            if isinstance(value, str) and not _unicode_text(value):
                raise InputError(f"{id_type}: the value holds a lone surrogate, which is no Unicode text")
            cleaned.setdefault(id_type, set()).add(config.identifiers[id_type].clean(value))
    subject = Subject({k: tuple(sorted(v)) for k, v in cleaned.items()})
    for system in config.systems:
        problem = system.problem_with(subject)
        if problem:
            raise InputError(f"system {system.name}: {problem}")
    return subject


def _unicode_text(value: str) -> bool:
    """Whether the string is Unicode text: a lone surrogate (JSON's "\\ud800") cannot be written as UTF-8,
    so no store, key or file could hold it; accepted, it would fail every system it reached."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(name: str, value: Any) -> str | None:
    """An optional free-text field: a string of printable characters, at most 200."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name}: must be a non-empty string")
    if len(value) > MAX_TEXT or not value.isprintable():
        raise InputError(f"{name}: at most {MAX_TEXT} printable characters")
    return value


def clean_scope(value: Any) -> Scope:
    """The request's scope: "all" (the default, when absent) or "training"; InputError otherwise."""
    if value is None:
        return Scope.ALL
    if not isinstance(value, str) or value not in set(Scope):
        raise InputError(f"scope: must be one of {', '.join(Scope)}")
    return Scope(value)


def reachable_types(config: Config, given: Iterable[str]) -> set[str]:
    """The identifier types a request will carry once the resolvers have run."""
    types = set(given)
    grew = True
    while grew:
        grew = False
        for resolver in config.resolvers:
            if resolver.from_type in types and resolver.to_type not in types:
                types.add(resolver.to_type)
                grew = True
    return types


def applicable(config: Config, clean: Subject, scope: Scope) -> tuple[list[SystemConfig], set[str]]:
    """The systems a request of this subject and scope is recorded with, and the names of those its scope
    skips; InputError when none would ever be erased (`erasure locate` asks the same)."""
    types = reachable_types(config, clean.identifiers)
    systems = [s for s in config.systems if s.identifier_types & types]
    if not systems:
        raise InputError(f"subject: no configured system matches on {', '.join(sorted(clean.identifiers))}")
    skipped = {s.name for s in systems if scope == Scope.TRAINING and not s.training}
    if len(skipped) == len(systems):  # as with no system at all: nothing would ever be erased
        raise InputError(f"scope: {scope}, but no system this subject is in is marked training = true "
                         f"({', '.join(s.name for s in systems)})")
    return systems, skipped


def submit(rt: Runtime, subject: Any, requested_by: Any = None, idempotency_key: Any = None,
           scope: Any = None) -> Submitted:
    """Validate, record and enqueue one request; a known idempotency key answers the first."""
    request_id = str(uuid.uuid4())  # first: it is the id of the trace that follows the request from here
    with tracing.intake(request_id):
        clean = clean_subject(rt.config, subject)
        with redact.values(clean.all_values()):
            done = _record(rt, request_id, clean, requested_by, idempotency_key, clean_scope(scope))
        tracing.note(request_id=done.request_id, duplicate=done.duplicate)
        return done


def _record(rt: Runtime, request_id: str, clean: Subject, requested_by: Any, idempotency_key: Any,
            scope: Scope) -> Submitted:
    config = rt.config
    requested_by = clean_text("requested_by", requested_by)
    idempotency_key = clean_text("idempotency_key", idempotency_key)
    systems, skipped = applicable(config, clean, scope)
    ref = rt.subject_ref(clean.to_json())

    if idempotency_key is not None:
        known = _known(rt, idempotency_key, ref, scope)
        if known is not None:
            return known
    received = utcnow()
    deadline = config.deadline.after(received)
    try:
        with rt.transaction() as session:  # statements, not objects: intake is the hot path of every request
            session.execute(insert(Request).values(
                id=request_id, subject_ref=ref, sealed_identifiers=rt.seal(request_id, clean),
                status=RequestStatus.RECEIVED, requested_by=requested_by, idempotency_key=idempotency_key,
                received_at=received, deadline=deadline, scope=scope))
            reason = f"scope: {scope}"
            out_of_scope = {"status": SystemStatus.SKIPPED, "reason": reason, "finished_at": received}
            in_scope = {"status": SystemStatus.PENDING, "reason": None, "finished_at": None}
            session.execute(insert(SystemTask), [
                {"request_id": request_id, "system": s.name, "kind": s.kind,
                 **(out_of_scope if s.name in skipped else in_scope)} for s in systems])
            # neither requested_by nor the idempotency key: free text that may name the subject
            audit.record(session, "request.received", request_id, subject_ref=ref,
                         identifier_types=sorted(clean.identifiers), systems=[s.name for s in systems],
                         deadline=audit.stamp(deadline), scope=str(scope))
            for s in systems:
                if s.name in skipped:
                    record_skipped(session, request_id, s.name, s.kind, reason)
    except IntegrityError:
        known = _known(rt, idempotency_key, ref, scope) if idempotency_key else None
        if known is None:
            raise
        return known
    log.info("request.received", request_id=request_id, subject_ref=ref, scope=str(scope),
             systems=[s.name for s in systems], requested_by=requested_by)
    _enqueue(rt, request_id)
    return Submitted(request_id, RequestStatus.RECEIVED, duplicate=False)


def _known(rt: Runtime, idempotency_key: str, ref: str, scope: Scope) -> Submitted | None:
    """The request first recorded under this idempotency key, if any. One for another subject, or of
    another scope, is a conflict, refused: answering it as the same request would drop what was asked
    now (a full erasure taken for an earlier objection to training would leave all but training data)."""
    with rt.transaction() as session:
        known = session.scalar(select(Request).where(Request.idempotency_key == idempotency_key))
    if known is None:
        return None
    if known.subject_ref != ref:
        raise InputError("idempotency_key: already used for a different subject")
    if known.scope != scope:
        raise InputError(f"idempotency_key: already used for a request of scope {known.scope}, not {scope}")
    if known.status == RequestStatus.RECEIVED:
        _enqueue(rt, known.id)  # the first publish may have been lost
    log.info("request.duplicate", request_id=known.id, subject_ref=ref)
    return Submitted(known.id, known.status, duplicate=True)


def _enqueue(rt: Runtime, request_id: str) -> None:
    try:
        rt.dispatch.start(request_id)
    except Exception as exc:
        log.error("request.not_enqueued", request_id=request_id, error=type(exc).__name__)
        raise NotEnqueued(f"request {request_id} is recorded but the broker did not take it "
                          f"({type(exc).__name__}); it is kept as received") from exc
