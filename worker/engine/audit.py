"""The audit trail: every event of a request's life, appended in the transaction that makes it
happen, each one's SHA-256 chained to the one before, so a changed, removed or inserted event
breaks the chain from there on. Events carry no identifier's value (subject_ref stands for
the subject): the trail cannot be erased, so nothing in it may ever need to be.

Appends are chained when the transaction commits, as its last statements, one transaction at a
time: PostgreSQL takes a transaction-scoped advisory lock, SQLite's BEGIN IMMEDIATE already
serializes writers, and `seq` as the primary key turns any other race into a failed commit,
never into a fork of the chain."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.orm import Session

from worker.errors import ErasureError
from worker.store.models import AuditEvent, utcnow

GENESIS = "0" * 64  # the `prev` of the first event
APPEND_LOCK = 0x41554454  # "AUDT": serializes appends to one PostgreSQL store
PENDING = "erasure.audit.pending"  # session.info key: events waiting for the commit
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
HASH = re.compile(r"[0-9a-f]{64}")


class ChainBroken(ErasureError):
    """The audit trail's hash chain does not hold: an event was changed, removed or inserted."""


def stamp(moment: datetime | None) -> str | None:
    """A time as the trail writes it: ISO 8601 in UTC, to the second, with a Z."""
    return None if moment is None else moment.strftime(TIME_FORMAT)


def canonical(value: Any) -> str:
    """The one JSON text a value hashes as: sorted keys, no spaces, UTF-8 characters as they are."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    """SHA-256 hex of a value's canonical JSON."""
    return hashlib.sha256(canonical(value).encode("utf-8")).hexdigest()


def event_hash(seq: int, at: datetime, type_: str, request_id: str | None, system: str | None,
               data: Mapping[str, Any], prev: str) -> str:
    """The hash an event must have: over its fields and the hash of the event before it."""
    return digest({"seq": seq, "at": stamp(at), "type": type_, "request_id": request_id,
                   "system": system, "data": data, "prev": prev})


def record(session: Session, type_: str, request_id: str | None = None, system: str | None = None,
           **data: Any) -> None:
    """Add an event to this session's transaction; it is chained and written when that commits,
    and dropped with it on a rollback. `data` must hold no identifier's value; None values are left out."""
    if not event.contains(session, "before_commit", _append_pending):
        event.listen(session, "before_commit", _append_pending)
        event.listen(session, "after_rollback", _drop_pending)
    clean = json.loads(canonical({k: v for k, v in data.items() if v is not None}))  # as it reads back
    session.info.setdefault(PENDING, []).append((type_, request_id, system, clean))


def _drop_pending(session: Session) -> None:
    session.info.pop(PENDING, None)


def _append_pending(session: Session) -> None:
    """Chain this transaction's events onto the head, holding the append lock until the commit."""
    pending = session.info.pop(PENDING, None)
    if not pending:
        return
    session.flush()  # the transaction's own rows first: the lock is then held for the append and the commit only
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK})
    last, at = head(session), utcnow()
    seq, prev, rows = last.seq, last.hash, []
    for type_, request_id, system, data in pending:
        seq += 1
        hashed = event_hash(seq, at, type_, request_id, system, data, prev)
        rows.append({"seq": seq, "at": at, "type": type_, "request_id": request_id, "system": system, "data": data,
                     "prev_hash": prev, "hash": hashed})
        prev = hashed
    session.execute(insert(AuditEvent), rows)  # one statement, not an object each: the lock is held meanwhile


@dataclass(frozen=True)
class Head:
    """The newest event of the trail (seq 0 and GENESIS when it is empty)."""

    seq: int
    hash: str


def head(session: Session) -> Head:
    """The chain's head as this transaction sees it."""
    last = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    return Head(last[0], last[1]) if last else Head(0, GENESIS)


def count(session: Session, request_id: str) -> int:
    """How many events concern one request."""
    found = select(func.count()).select_from(AuditEvent).where(AuditEvent.request_id == request_id)
    return session.scalar(found) or 0


def identifier_types(session: Session, request_id: str) -> list[str]:
    """The identifier types (names, never values) a request was looked for by: those it started with,
    resolved ones included (`request.resolved`), or for one never started those it was received with."""
    data = session.scalar(
        select(AuditEvent.data)
        .where(AuditEvent.request_id == request_id, AuditEvent.type.in_(("request.resolved", "request.received")))
        .order_by(AuditEvent.seq.desc()).limit(1)
    )
    types = (data or {}).get("identifier_types") or []
    if isinstance(types, dict):  # request.resolved: {type: how many values}
        return sorted(t for t, n in types.items() if n)
    return sorted(types)


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: the events that check out from the first, the last of them, and the
    first event whose chain is broken (None if none is), with why."""

    events: int
    head: Head
    broken: int | None = None
    problem: str | None = None
    found: bool = False  # whether the head asked for is one of the events that check out


def verify(transaction: Callable[[], AbstractContextManager[Session]], wanted: str | None = None,
           batch: int = 5000) -> Verdict:
    """Walk the chain from the first event, recomputing each hash, in short transactions (the trail
    only grows at its end, so the events read stay as they were). Stops at the first broken link."""
    checked, found = Head(0, GENESIS), False
    columns = (AuditEvent.seq, AuditEvent.at, AuditEvent.type, AuditEvent.request_id, AuditEvent.system,
               AuditEvent.data, AuditEvent.prev_hash, AuditEvent.hash)
    while True:
        with transaction() as session:
            rows = session.execute(select(*columns).where(AuditEvent.seq > checked.seq)
                                   .order_by(AuditEvent.seq).limit(batch)).all()
        if not rows:
            return Verdict(checked.seq, checked, found=found)
        for seq, at, type_, request_id, system, data, prev_hash, hashed in rows:
            problem = None
            if seq != checked.seq + 1:
                gap = f"event {seq - 1} is" if seq == checked.seq + 2 else f"events {checked.seq + 1} to {seq - 1} are"
                problem = f"{gap} missing before it"
            elif prev_hash != checked.hash:
                problem = f"it does not link to the hash of event {checked.seq}" if checked.seq \
                    else "it does not start the chain"
            elif event_hash(seq, at, type_, request_id, system, data, prev_hash) != hashed:
                problem = "its content does not match its hash"
            if problem:
                return Verdict(checked.seq, checked, seq, problem, found)
            checked, found = Head(seq, hashed), found or hashed == wanted
