"""The store's tables as SQLAlchemy 2.0 typed models; the store is the source of truth."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class RequestStatus(StrEnum):
    """Where one erasure request stands."""

    RECEIVED = "received"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class Scope(StrEnum):
    """What a request asks to erase: all the subject's data (Art. 17), or only what models are trained
    on, an objection to training use (Art. 21): the systems marked `training`."""

    ALL = "all"
    TRAINING = "training"


class SystemStatus(StrEnum):
    """Where one system of one request stands."""

    PENDING = "pending"
    RUNNING = "running"
    ERASED = "erased"
    NOT_FOUND = "not_found"
    FAILED = "failed"
    EXEMPT = "exempt"
    SKIPPED = "skipped"  # out of the request's scope (an objection to training leaves the others alone)


SETTLED = frozenset({SystemStatus.ERASED, SystemStatus.NOT_FOUND, SystemStatus.FAILED, SystemStatus.EXEMPT,
                     SystemStatus.SKIPPED})


class FlagState(StrEnum):
    """Where one model flag stands: open until someone acts, then retrained or waived for good."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RETRAINED = "retrained"
    WAIVED = "waived"


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as naive UTC and read back timezone-aware, on every engine."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """The declarative base of every table."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Request(Base):
    """One erasure request."""

    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_ref: Mapped[str] = mapped_column(String(64), index=True)
    # sealed by worker.keys, bound to this request's id; dropped once the request is completed
    # and no exemption waits for a recheck (the suppression entry is all that is kept)
    sealed_identifiers: Mapped[str | None] = mapped_column(Text)
    # identifiers in the clear, from before 0006: sealed and emptied when the store is first opened
    legacy_identifiers: Mapped[dict[str, Any] | None] = mapped_column("identifiers", JSON(none_as_null=True))
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    deadline: Mapped[datetime] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    # Art. 12(3): one extension of up to two months, with the reason given to the subject
    extended_months: Mapped[int | None]
    extended_reason: Mapped[str | None] = mapped_column(Text)
    extended_at: Mapped[datetime | None]
    original_deadline: Mapped[datetime | None]  # the deadline before the extension
    overdue_warned_at: Mapped[datetime | None]  # when `request.overdue` was logged: once per request
    # set when the reconciler (or retry) sent a message outside the normal flow, so it waits before another
    queued_at: Mapped[datetime | None]
    requeues: Mapped[int] = mapped_column(default=0, server_default="0")
    scope: Mapped[str] = mapped_column(String(16), default="all", server_default="all")  # "all" | "training"

    systems: Mapped[list[SystemTask]] = relationship(
        back_populates="request", order_by="SystemTask.id", cascade="all, delete-orphan"
    )


class Suppression(Base):
    """What `erasure replay` needs after a backup restore: a completed request's identifiers
    (sealed under the suppression key, bound to the request id) and the systems they were
    erased from (or not found in): never those exempt or failed."""

    __tablename__ = "suppressions"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    completed_at: Mapped[datetime] = mapped_column(index=True)
    systems: Mapped[list[Any]]
    sealed: Mapped[str] = mapped_column(Text)


class GuardEntry(Base):
    """One identifier value of a completed request, as a keyed hash (HMAC-SHA256 under the subject
    key, of the type and the normalized value): what keeps the person out of the next training set."""

    __tablename__ = "guard_entries"
    __table_args__ = (UniqueConstraint("id_type", "digest", name="uq_guard_entries_type_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id_type: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    added_at: Mapped[datetime]


class GuardLook(Base):
    """What the reconciler's guard watch last saw of one snapshot folder: its files, as a digest of
    their names, so a folder that appears or gains a file is checked against the guard again."""

    __tablename__ = "guard_looks"

    snapshot: Mapped[str] = mapped_column(String(320), primary_key=True)  # SYSTEM:FOLDER
    system: Mapped[str] = mapped_column(String(100), index=True)
    files: Mapped[int] = mapped_column(Integer)
    files_digest: Mapped[str] = mapped_column(String(64))
    looked_at: Mapped[datetime]
    rows_caught: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SystemTask(Base):
    """The erasure of one request in one system."""

    __tablename__ = "system_tasks"
    __table_args__ = (UniqueConstraint("request_id", "system"), Index("ix_system_tasks_status", "status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    system: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None]
    items_erased: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    recheck_at: Mapped[datetime | None] = mapped_column(index=True)
    evidence: Mapped[dict[str, Any] | None]
    # file -> rows of this request's a rewrite removes, written before the file is swapped in and
    # cleared when an outcome is recorded: a kill between the swap and the record loses no count
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]  # as Request.queued_at
    requeues: Mapped[int] = mapped_column(default=0, server_default="0")

    request: Mapped[Request] = relationship(back_populates="systems")


class SnapshotHit(Base):
    """A snapshot that held a request's subject, recorded before it was rewritten."""

    __tablename__ = "snapshot_hits"
    __table_args__ = (UniqueConstraint("request_id", "snapshot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    system: Mapped[str] = mapped_column(String(100))
    snapshot: Mapped[str] = mapped_column(String(300), index=True)
    rows: Mapped[int]
    files: Mapped[list[Any]]
    found_at: Mapped[datetime]


class PartStatus(StrEnum):
    """Where one part of a spread snapshot pass stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # for good: the pass failed with it
    DROPPED = "dropped"  # another part failed the pass first: never run


class SnapshotPass(Base):
    """A snapshot system's pass over its files for some requests, spread over parts that any worker
    may take; settled (each request's outcome recorded) in the transaction that records its last part."""

    __tablename__ = "snapshot_passes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    system: Mapped[str] = mapped_column(String(100))
    requests: Mapped[list[Any]]  # request ids, in the order claimed: the index of each part's per-request lists
    parts: Mapped[int]
    parts_done: Mapped[int] = mapped_column(default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)  # why it failed, if a part failed for good
    created_at: Mapped[datetime]
    settled_at: Mapped[datetime | None] = mapped_column(index=True)


class SnapshotPart(Base):
    """Some files of a spread pass, erased for every request of the pass by whichever worker claims it.
    Per-file lists hold one number per request of the pass, in its order."""

    __tablename__ = "snapshot_parts"
    __table_args__ = (Index("ix_snapshot_parts_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pass_id: Mapped[str] = mapped_column(ForeignKey("snapshot_passes.id"), index=True)
    seq: Mapped[int]
    files: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    lease_until: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]  # when its message was last sent
    # file -> rows removed per request, written before the file is swapped in: a part killed after the
    # swap is redone without losing the count
    journal: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    removed: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # file -> rows per request
    purged: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # file -> older versions per request
    skipped: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))  # files lacking a where column
    left_rows: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))  # rows left per request (verify)
    error: Mapped[str | None] = mapped_column(Text)
    transient: Mapped[bool | None] = mapped_column(Boolean)  # whether the last error may pass


class Lineage(Base):
    """A model version trained on a snapshot."""

    __tablename__ = "lineage"
    __table_args__ = (UniqueConstraint("model", "version", "snapshot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    snapshot: Mapped[str] = mapped_column(String(300), index=True)
    recorded_at: Mapped[datetime]
    trained_at: Mapped[datetime]  # when training read the snapshot (its start)


class ModelFlag(Base):
    """A model version flagged because it was trained on a snapshot holding a subject."""

    __tablename__ = "model_flags"
    __table_args__ = (UniqueConstraint("model", "version", "request_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    snapshots: Mapped[list[Any]]
    state: Mapped[str] = mapped_column(String(16), default=FlagState.OPEN)
    flagged_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)  # the reason given at the last change of state
    changed_at: Mapped[datetime | None]
    # the signed notice to the training platform ([models] notify_url): sent until it answers 2xx
    notified_at: Mapped[datetime | None]
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    notify_after: Mapped[datetime | None]  # not before: the backoff after a failed notice

    events: Mapped[list[FlagEvent]] = relationship(order_by="FlagEvent.id", cascade="all, delete-orphan")


class FlagEvent(Base):
    """One change of a flag's state, with the reason given: the flag's history."""

    __tablename__ = "flag_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flag_id: Mapped[int] = mapped_column(ForeignKey("model_flags.id"), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class AuditEvent(Base):
    """One event of the audit trail: append-only, its hash chained to the event before it.
    It holds no identifier's value: a subject appears only by its subject_ref."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_type_system", "type", "system"),)  # the metrics count by type

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(36), index=True)
    system: Mapped[str | None] = mapped_column(String(100))
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class Counter(Base):
    """A running total the metrics report, and when it last moved (seeded by the migrations)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime | None]
