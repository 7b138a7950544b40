"""`erasure export` (Art. 15 access): one zip of the subject's records from every system that can read
them, its manifest's counts and SHA-256s true to the parts, written 0600 and never over a file, nothing
changed in any system, and nothing of the records in a log line or the audit trail."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from sqlalchemy import select

from connectors.base import CANNOT_EXPORT
from connectors.snapshot.preview import DELTA_NOTE
from tests.helpers import (
    EMAIL,
    SUBJECT,
    MakeRuntime,
    bucket_fingerprint,
    clicks,
    database_fingerprint,
    folder_fingerprint,
    resolver,
    service_raw,
    shop,
    start_service,
    system_table,
    uploads,
)
from worker.engine import export, lineage
from worker.errors import InputError, PermanentError
from worker.runtime import Runtime
from worker.store.models import AuditEvent

TRAINED_ON = "clickstream:2026-10-01"


@pytest.fixture
def world(make_runtime: MakeRuntime, tmp_path: Path, s3_client: Any, bucket: str, s3_endpoint: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A shop database (with the email resolver), an uploads bucket, Parquet clickstream snapshots with a
    model trained on one, and a service that could only be called."""
    service = start_service(monkeypatch)
    url = f"sqlite:///{tmp_path}/app.db"
    rt = make_runtime(resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email")
                      + shop(url) + uploads(s3_client, bucket, s3_endpoint) + clicks(tmp_path / "clicks", "parquet")
                      + system_table(**service_raw(service.url)))
    lineage.add(rt, "ranker", "1", [TRAINED_ON])
    yield rt
    service.stop()


def entries(path: Path) -> dict[str, bytes]:
    """Every entry of a zip file, by name."""
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def lines(data: bytes) -> list[Any]:
    """A JSON lines part's records."""
    return [json.loads(line) for line in data.decode().splitlines()]


def test_every_system_that_can_read_gives_its_records(world: Runtime, tmp_path: Path) -> None:
    """Rows per table (order items followed through the orders), the bucket's versions and markers, the
    snapshots' rows, the models that would be flagged; a service that cannot be read says so."""
    out = tmp_path / "jane.zip"
    done = export.export(world, {"email": EMAIL}, out)
    parts = entries(out)
    assert [r["id"] for r in lines(parts["app-db/tables/users.jsonl"])] == [42]
    assert lines(parts["app-db/tables/users.jsonl"])[0]["email"] == EMAIL
    assert [r["id"] for r in lines(parts["app-db/tables/orders.jsonl"])] == [1, 2]
    assert [r["sku"] for r in lines(parts["app-db/tables/order_items.jsonl"])] == ["a", "b", "c"]
    objects = lines(parts["uploads/objects.jsonl"])
    assert sorted((o["key"], o["delete_marker"]) for o in objects) == [
        ("avatars/42/a.png", False), ("avatars/42/a.png", False), ("avatars/42/b.png", False),
        ("avatars/42/b.png", True), ("exports/42.zip", False)]
    assert lines(parts["clickstream/snapshots/2026-10-01.jsonl"]) == [
        {"user_id": 42, "event": "click-0"}, {"user_id": 42, "event": "click-2"}]
    assert lines(parts["clickstream/snapshots/2026-11-01.jsonl"]) == [{"user_id": 42, "event": "click-0"}]
    assert lines(parts["models.jsonl"]) == [{"model": "ranker", "version": "1", "snapshots": [TRAINED_ON]}]
    billing = next(s for s in done.manifest["systems"] if s["system"] == "billing")
    assert (billing["parts"], billing["note"]) == ([], CANNOT_EXPORT)


def test_the_manifest_counts_and_hashes_each_part(world: Runtime, tmp_path: Path) -> None:
    """manifest.json lists every other entry once, with its records and the SHA-256 of its bytes."""
    out = tmp_path / "jane.zip"
    export.export(world, {"user_id": SUBJECT}, out)
    parts = entries(out)
    manifest = json.loads(parts.pop("manifest.json"))
    listed = [p for s in manifest["systems"] for p in s["parts"]] + [manifest["models"]]
    assert sorted(p["path"] for p in listed) == sorted(parts) and manifest["parts"] == len(parts)
    for part in listed:
        assert part["sha256"] == hashlib.sha256(parts[part["path"]]).hexdigest()
        assert part["records"] == len(parts[part["path"]].splitlines())
    assert manifest["subject_ref"] == world.subject_ref({"user_id": [SUBJECT]})


def test_with_objects_the_bodies_come_too(world: Runtime, tmp_path: Path) -> None:
    """`contents`: each version's body as stored, named in the objects' list; a delete marker has none."""
    out = tmp_path / "jane.zip"
    export.export(world, {"user_id": SUBJECT}, out, contents=True)
    parts = entries(out)
    bodies = {(o["key"], parts[f"uploads/{o['part']}"]) for o in lines(parts["uploads/objects.jsonl"]) if o["part"]}
    assert bodies == {("avatars/42/a.png", b"a1"), ("avatars/42/a.png", b"a2"), ("avatars/42/b.png", b"b1"),
                      ("exports/42.zip", b"zip")}


def test_the_file_is_0600_whatever_the_umask_and_nothing_changed(world: Runtime, tmp_path: Path, s3_client: Any,
                                                                  bucket: str) -> None:
    """Written with mode 0600 under a permissive umask; no row, object or snapshot file changed."""
    before = (database_fingerprint(f"sqlite:///{tmp_path}/app.db"), bucket_fingerprint(s3_client, bucket),
              folder_fingerprint(tmp_path / "clicks"))
    old = os.umask(0)
    try:
        export.export(world, {"user_id": SUBJECT}, tmp_path / "jane.zip", contents=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "jane.zip").stat().st_mode) == 0o600
    assert (database_fingerprint(f"sqlite:///{tmp_path}/app.db"), bucket_fingerprint(s3_client, bucket),
            folder_fingerprint(tmp_path / "clicks")) == before


def test_an_existing_file_is_never_overwritten(world: Runtime, tmp_path: Path) -> None:
    """An --out that exists is refused before anything is read; it keeps its bytes; no temporary file stays."""
    out = tmp_path / "jane.zip"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists"):
        export.export(world, {"user_id": SUBJECT}, out)
    assert out.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".jane")] == []


def test_a_failing_system_leaves_no_file(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A system that cannot be read fails the export: no file, no temporary file, no audit event."""
    shop(f"sqlite:///{tmp_path}/app.db")
    rt = make_runtime(system_table("app-db", "sql", url=f"sqlite:///{tmp_path}/app.db", tables=[
        {"name": "customers", "where": {"id": "user_id"}, "action": "delete"}]))
    with pytest.raises(PermanentError, match="customers"):
        export.export(rt, {"user_id": SUBJECT}, tmp_path / "jane.zip")
    assert sorted(p.name for p in tmp_path.iterdir() if "jane" in p.name) == []
    with rt.transaction() as session:
        assert session.scalars(select(AuditEvent.type)).all() == []


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_text_snapshots_give_their_records(make_runtime: MakeRuntime, tmp_path: Path, fmt: str) -> None:
    """JSON lines records come as they are; CSV records keyed by the header (as text)."""
    rt = make_runtime(clicks(tmp_path / "clicks", fmt))
    export.export(rt, {"user_id": SUBJECT}, tmp_path / "jane.zip")
    rows = lines(entries(tmp_path / "jane.zip")["clickstream/snapshots/2026-10-01.jsonl"])
    first = {"user_id": 42 if fmt == "jsonl" else "42", "event": "click-0"}
    assert rows == [first, {**first, "event": "click-2"}]


def test_a_delta_table_is_counted_not_exported(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A Delta system's note says its rows are not exported."""
    write_deltalake(str(tmp_path / "lake"), pa.table({"user_id": pa.array([42, 4], pa.int64())}))
    rt = make_runtime(system_table("lake", "snapshot", location=str(tmp_path / "lake"), format="delta",
                                   where={"user_id": "user_id"}))
    done = export.export(rt, {"user_id": SUBJECT}, tmp_path / "jane.zip")
    assert done.manifest["systems"][0]["note"] == DELTA_NOTE


def test_nothing_of_the_records_reaches_a_log_or_the_audit_trail(world: Runtime, tmp_path: Path,
                                                                 json_logs: Any) -> None:
    """The log lines and the `subject.exported` event hold counts and the file's name: no identifier,
    no record (the address, the object key), nothing of the manifest's hashes."""
    export.export(world, {"email": EMAIL}, tmp_path / "jane.zip", contents=True)
    with world.transaction() as session:
        events = session.scalars(select(AuditEvent)).all()
    exported = [e for e in events if e.type == "subject.exported"]
    assert len(exported) == 1
    assert exported[0].data["file"] == "jane.zip" and exported[0].data["records"]["app-db"] == 6
    written = json.dumps(json_logs()) + json.dumps([e.data for e in events])
    assert "subject.exported" in written
    for secret in (EMAIL, "1 Main St", "avatars/42", "click-2"):
        assert secret not in written
