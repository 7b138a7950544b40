"""Lineage (which model versions were trained on which snapshots) and the flags raised
when a snapshot that held a subject's rows fed a model."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.config import Config
from worker.errors import InputError
from worker.runtime import Runtime
from worker.store.models import Lineage, ModelFlag, Request, SnapshotHit, utcnow

log = structlog.get_logger("erasure.lineage")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+/@-]{0,99}")
FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+@-]{0,199}")


def check_snapshot(config: Config, snapshot: str) -> str:
    """A `SYSTEM:FOLDER` id naming a snapshot system of the config."""
    system, sep, folder = snapshot.partition(":")
    if not sep or not FOLDER.fullmatch(folder) or folder in (".", ".."):
        raise InputError(f"--snapshot {snapshot[:80]!r}: write it as SYSTEM:FOLDER, e.g. clickstream:2026-11-01")
    kinds = {s.name: s.kind for s in config.systems}
    if kinds.get(system) != "snapshot":
        raise InputError(f"--snapshot {snapshot[:80]!r}: {system!r} is not a snapshot system of this config")
    return snapshot


def add(rt: Runtime, model: str, version: str, snapshots: list[str]) -> int:
    """Record that a model version was trained on snapshots; returns how many were new."""
    for label, value in (("--model", model), ("--version", version)):
        if not NAME.fullmatch(value):
            raise InputError(f"{label}: letters, digits and _.:+/@- only, at most 100 characters")
    if not snapshots:
        raise InputError("--snapshot: name at least one SYSTEM:FOLDER")
    wanted = {check_snapshot(rt.config, s) for s in snapshots}
    with rt.transaction() as session:
        known = set(session.scalars(select(Lineage.snapshot).where(Lineage.model == model,
                                                                   Lineage.version == version)))
        for snapshot in sorted(wanted - known):
            session.add(Lineage(model=model, version=version, snapshot=snapshot, recorded_at=utcnow()))
    log.info("lineage.added", model=model, version=version, snapshots=sorted(wanted), new=len(wanted - known))
    return len(wanted - known)


def flag_models(session: Session, request: Request) -> list[ModelFlag]:
    """Flag every model version trained on a snapshot that held this request's subject."""
    rows = session.execute(
        select(Lineage.model, Lineage.version, Lineage.snapshot)
        .join(SnapshotHit, SnapshotHit.snapshot == Lineage.snapshot)
        .where(SnapshotHit.request_id == request.id, SnapshotHit.rows > 0)
    ).all()
    by_model: dict[tuple[str, str], set[str]] = defaultdict(set)
    for model, version, snapshot in rows:
        by_model[(model, version)].add(snapshot)
    earlier = session.scalars(select(ModelFlag).where(ModelFlag.request_id == request.id))
    known = {(f.model, f.version): f for f in earlier}
    flags = []
    for (model, version), snapshots in sorted(by_model.items()):
        flag = known.get((model, version))
        if flag is None:
            flag = ModelFlag(model=model, version=version, request_id=request.id,
                             snapshots=sorted(snapshots), state="open", flagged_at=utcnow())
            session.add(flag)
            log.warning("model.flagged", request_id=request.id, subject_ref=request.subject_ref,
                        model=model, version=version, snapshots=sorted(snapshots))
        flags.append(flag)
    return flags


def models(rt: Runtime, flagged_only: bool) -> list[dict[str, Any]]:
    """Model versions with their flags, as `erasure models --json` prints them."""
    with rt.transaction() as session:
        versions = session.execute(select(Lineage.model, Lineage.version).distinct()).all()
        flags = session.scalars(select(ModelFlag).order_by(ModelFlag.flagged_at, ModelFlag.id)).all()
    by_version: dict[tuple[str, str], list[dict[str, Any]]] = {tuple(v): [] for v in versions}  # type: ignore[misc]
    for flag in flags:
        by_version.setdefault((flag.model, flag.version), []).append(
            {"request_id": flag.request_id, "snapshots": flag.snapshots, "state": flag.state}
        )
    return [
        {"model": model, "version": version, "flags": found}
        for (model, version), found in sorted(by_version.items())
        if found or not flagged_only
    ]
