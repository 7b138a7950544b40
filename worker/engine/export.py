"""`erasure export` (Art. 15 access): the subject's records from every system that can read them, in one
zip file: each system's parts under its name (`app-db/tables/users.jsonl`, `uploads/objects.jsonl` and with
`contents` the objects themselves, `clickstream/snapshots/2026-11-01.jsonl`), `models.jsonl` (the model
versions trained on snapshots holding the subject, which an erasure would flag), and `manifest.json`:
each part's records or bytes and SHA-256, and each system's note when it cannot read them.

The subject is validated as intake validates it and the resolvers run (they only read). Parts are
streamed into a temporary file beside the target, created with mode 0600, and linked into place only
once whole: an existing file is never overwritten, and a failure leaves nothing. Nothing of the
records reaches a log line or the audit event, `subject.exported`, which holds the subject's keyed
ref, counts and the file's name."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from connectors import redact
from connectors.base import Part, Preview, Subject, SystemConfig
from worker.engine import audit, fanout, intake, locate
from worker.errors import ErasureError, InputError
from worker.runtime import Runtime
from worker.store.models import Scope, utcnow

log = structlog.get_logger("erasure.export")
MANIFEST = "manifest.json"
MODELS = "models.jsonl"
FORMAT = 1


@dataclass(frozen=True)
class Exported:
    """What `export` wrote: the file, and its manifest."""

    path: Path
    manifest: dict[str, Any]

    def show(self) -> str:
        """One line for people: where, how many parts and records, and the systems that could not be read."""
        systems = self.manifest["systems"]
        records = sum(p.get("records", 0) for s in systems for p in s["parts"])
        unread = [f"{s['system']} ({s['note']})" for s in systems if s["note"]]
        return (f"wrote {self.path} (mode 0600): {self.manifest['parts']} part(s), {records} record(s) "
                f"from {len(systems)} system(s)" + (f"; not read: {'; '.join(unread)}" if unread else ""))


def export(rt: Runtime, subject: Any, out: str | Path, contents: bool = False) -> Exported:
    """Write the subject's records to a new zip file at `out`; InputError on bad input or an existing file."""
    clean = intake.clean_subject(rt.config, subject)
    target = Path(out)
    _check_target(target)
    with redact.values(clean.all_values()):
        systems, _ = intake.applicable(rt.config, clean, Scope.ALL)
        resolved = fanout.resolve(rt, None, clean) if rt.config.resolvers else clean
        ref = rt.subject_ref(clean.to_json())
        with redact.values(resolved.all_values()):
            manifest = _write(rt, target, systems, resolved, contents, ref)
            counts = {s["system"]: sum(p.get("records", 0) for p in s["parts"]) for s in manifest["systems"]}
            with rt.transaction() as session:
                audit.record(session, "subject.exported", subject_ref=ref, file=target.name, parts=manifest["parts"],
                             records=counts, contents=contents)
            log.info("subject.exported", subject_ref=ref, file=target.name, parts=manifest["parts"],
                     records=sum(counts.values()))
    return Exported(target, manifest)


def _check_target(target: Path) -> None:
    """A new file in a folder that exists."""
    if target.exists() or target.is_symlink():
        raise InputError(f"--out: {target} exists; an export never overwrites a file")
    if not target.parent.is_dir():
        raise InputError(f"--out: the folder {target.parent} does not exist")


def _write(rt: Runtime, target: Path, systems: Sequence[SystemConfig], subject: Subject, contents: bool,
           ref: str) -> dict[str, Any]:
    """Write the archive to a 0600 temporary file beside the target, then link it into place; its manifest."""
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask
        with os.fdopen(descriptor, "wb") as sink:
            with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
                manifest = _fill(rt, archive, systems, subject, contents, ref)
                archive.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
        _place(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return manifest


def _place(temp: Path, target: Path) -> None:
    """Link the finished file at the target, refusing one that appeared meanwhile."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise InputError(f"--out: {target} exists; an export never overwrites a file") from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise InputError(f"--out: {target} exists; an export never overwrites a file") from None
        os.replace(temp, target)


def _fill(rt: Runtime, archive: zipfile.ZipFile, systems: Sequence[SystemConfig], subject: Subject, contents: bool,
          ref: str) -> dict[str, Any]:
    """Each system's parts into the archive, then the models; the manifest that lists them."""
    listed, looks = [], []
    for system in systems:
        connector = rt.connector(system.name)
        entry: dict[str, Any] = {"system": system.name, "kind": system.kind, "parts": [], "note": None}
        for part in connector.export(subject, contents=contents):
            if part.records is None and part.content is None:
                entry["note"] = part.note
                continue
            entry["parts"].append(_write_part(archive, f"{system.name}/{part.name}", part))
        hits = Preview(looked=False, snapshots=connector.locate(subject))  # the snapshots, for the models rule
        looks.append(locate.SystemLook(system.name, system.kind, hits))
        listed.append(entry)
    models = locate.would_flag(rt, looks)
    flagged = _write_part(archive, MODELS, Part(MODELS, records=models))
    return {"format": FORMAT, "created_at": audit.stamp(utcnow()), "subject_ref": ref,
            "identifier_types": {k: len(v) for k, v in sorted(subject.identifiers.items())},
            "parts": sum(len(s["parts"]) for s in listed) + 1, "systems": listed, "models": flagged}


def _write_part(archive: zipfile.ZipFile, path: str, part: Part) -> dict[str, Any]:
    """One part as an entry of the archive, hashed as written: its path, records (or bytes) and SHA-256."""
    if path.startswith("/") or ".." in path.split("/") or "\\" in path:
        raise ErasureError(f"a part of system {path.split('/')[0]!r} is named so that it would leave its folder")
    digest, size, records = hashlib.sha256(), 0, 0
    with archive.open(path, "w", force_zip64=True) as entry:
        chunks = ((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in part.records or ()) \
            if part.records is not None else part.content or ()
        for chunk in chunks:
            entry.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            records += 1
    counted = {"records": records} if part.records is not None else {}
    return {"path": path, **counted, "bytes": size, "sha256": digest.hexdigest()}
