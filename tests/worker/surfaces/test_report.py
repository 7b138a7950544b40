"""The certificate of erasure: the contract's fields with each system's evidence, the flagged
models and the audit head, as JSON and as Markdown a regulator reads; never an identifier's value,
there or in the audit trail."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.helpers import (
    NO_BATCH_WAIT,
    OCT,
    MakeRuntime,
    drain,
    resolver,
    snapshot_system,
    stub,
    system_table,
    write_snapshot,
)
from worker.engine import deadlines, flags, intake, lineage
from worker.runtime import Runtime
from worker.store.models import AuditEvent, FlagState, Request
from worker.surfaces import report
from worker.surfaces.cli import main

EMAIL, USER_ID = "zed.quill@example.org", "918273645"
CONTRACT_FIELDS = {"request_id", "subject_ref", "received_at", "deadline", "completed_at", "systems",
                   "flagged_models", "audit"}


def app_db(path: Path) -> str:
    """An app database where the subject has an account, two orders and an invoice; so has someone else."""
    db = sqlite3.connect(path)
    db.executescript(f"""
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, email TEXT);
        CREATE TABLE invoices (id INTEGER PRIMARY KEY, user_id INTEGER, total INTEGER);
        INSERT INTO users VALUES ({USER_ID}, '{EMAIL}'), (7, 'other@example.org');
        INSERT INTO orders VALUES (1, {USER_ID}, '{EMAIL}'), (2, {USER_ID}, '{EMAIL}'), (3, 7, 'other@example.org');
        INSERT INTO invoices VALUES (1, {USER_ID}, 120), (2, 7, 80);
    """)
    db.commit()
    db.close()
    return (resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email")
            + system_table("app-db", "sql", url=f"sqlite:///{path}", tables=[
                {"name": "invoices", "where": {"user_id": "user_id"}, "action": "delete",
                 "retain": {"reason": "invoices are kept 10 years for tax law", "until": "2035-12-31"}},
                {"name": "orders", "where": {"user_id": "user_id"}, "action": "anonymize", "set": {"email": ""}},
                {"name": "users", "where": {"id": "user_id"}, "action": "delete"},
            ]))


def uploads(s3_client: Any, bucket: str, endpoint: str) -> str:
    """Two of the subject's objects and one of someone else's, in a bucket on moto's server."""
    for key in (f"avatars/{USER_ID}/face.png", f"avatars/{USER_ID}/old.png", "avatars/7/face.png"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"png")
    return system_table("uploads", "s3", bucket=bucket, endpoint_url=endpoint, prefixes=["avatars/{user_id}/"])


@pytest.fixture
def world(make_runtime: MakeRuntime, tmp_path: Path, s3_client: Any, bucket: str,
          s3_endpoint: str) -> tuple[Runtime, str]:
    """A request for the subject by email, erased from a sql database (invoices retained), a bucket
    and a snapshot a flagged model was trained on; extended, and its flag acknowledged, with reasons."""
    clicks = tmp_path / "clickstream"
    write_snapshot(clicks / "2026-10-01" / "part-0.parquet", [int(USER_ID), 7])
    systems = app_db(tmp_path / "app.db") + uploads(s3_client, bucket, s3_endpoint) + snapshot_system(clicks)
    rt = make_runtime(systems + stub("crm", uses=["email"]), worker=NO_BATCH_WAIT)
    lineage.add(rt, "recsys", "3", [OCT])
    request_id = intake.submit(rt, {"email": EMAIL.upper()}, requested_by=EMAIL).request_id
    deadlines.extend(rt, request_id, 1, "many systems to go through")
    drain(rt)
    flags.change(rt, "recsys", "3", FlagState.ACKNOWLEDGED, "retraining planned for next sprint")
    return rt, request_id


def test_json_has_the_contract_fields(world: tuple[Runtime, str]) -> None:
    """The report has every field the contract names; each system its status, items, time and evidence."""
    rt, request_id = world
    certificate = report.build(rt, request_id)
    assert CONTRACT_FIELDS <= set(certificate)
    assert certificate["status"] == "completed" and certificate["deadline_met"] is True
    systems = {s["system"]: s for s in certificate["systems"]}
    assert {name: (s["status"], s["items_erased"]) for name, s in systems.items()} == {
        "app-db": ("exempt", 3), "uploads": ("erased", 2), "clickstream": ("erased", 1), "crm": ("erased", 1)}
    assert all(s["finished_at"] and s["evidence"] for s in systems.values())
    tables = {t["table"]: t for t in systems["app-db"]["evidence"]["tables"]}
    assert (tables["users"]["rows"], tables["orders"]["rows"], tables["invoices"]["rows_kept"]) == (1, 2, 1)
    assert {o["key"] for o in systems["uploads"]["evidence"]["objects"]} == {
        "avatars/{user_id}/face.png", "avatars/{user_id}/old.png"}
    assert [(f["model"], f["version"], f["snapshots"], f["state"]) for f in certificate["flagged_models"]] == [
        ("recsys", "3", [OCT], "acknowledged")]


def test_audit_field_counts_the_requests_events_and_quotes_the_head(world: tuple[Runtime, str]) -> None:
    """`audit` has the number of this request's events and the hash of the trail's last event."""
    rt, request_id = world
    with rt.transaction() as session:
        mine = session.scalars(select(AuditEvent.seq).where(AuditEvent.request_id == request_id)).all()
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert report.build(rt, request_id)["audit"] == {"events": len(mine), "head": last.hash, "head_seq": last.seq}


def test_evidence_digest_matches_the_audit_trail(world: tuple[Runtime, str]) -> None:
    """Each system's evidence in the report hashes to the digest its settling event recorded."""
    rt, request_id = world
    with rt.transaction() as session:
        settled = {e.system: e.data.get("evidence_sha256") for e in session.scalars(
            select(AuditEvent).where(AuditEvent.request_id == request_id, AuditEvent.system.is_not(None))
            .order_by(AuditEvent.seq))}
    assert {s["system"]: s["evidence_sha256"] for s in report.build(rt, request_id)["systems"]} == settled


def test_no_identifier_value_in_the_report_or_the_audit_trail(world: tuple[Runtime, str]) -> None:
    """Neither the email (in any case) nor the resolved user id appears in the certificate or any audit event."""
    rt, request_id = world
    certificate = report.build(rt, request_id)
    with rt.engine.connect() as conn:
        trail = json.dumps([list(row) for row in conn.exec_driver_sql("SELECT * FROM audit_events")], default=str)
    for text in (json.dumps(certificate, ensure_ascii=False), report.markdown(certificate), trail):
        lowered = text.lower()
        assert "zed.quill" not in lowered and USER_ID not in text
    assert "request.received" in trail and "model.flagged" in trail and "flag.acknowledged" in trail


def test_markdown_certificate_reads_whole(world: tuple[Runtime, str]) -> None:
    """The Markdown names the request, each system and what it did, the retention and its reason,
    the extension, the flagged model's state, the audit head and how to verify it."""
    rt, request_id = world
    certificate = report.build(rt, request_id)
    text = report.markdown(certificate)
    assert text.startswith("# Certificate of erasure")
    for expected in (request_id, certificate["subject_ref"], "**completed**", ", within the deadline",
                     "extended by 1 month(s)", "many systems to go through",
                     "| app-db | sql | exempt | 3 |", "| uploads | s3 | erased | 2 |",
                     "table `users`: 1 row deleted", "table `orders`: 2 rows anonymized",
                     "table `invoices`: 1 row kept, retained until 2035-12-31 (invoices are kept 10 years for tax law)",
                     "`avatars/{user_id}/face.png`", "file `2026-10-01/part-0.parquet`",
                     "| recsys | 3 | `clickstream:2026-10-01` | acknowledged | retraining planned for next sprint |",
                     f"erasure audit verify --head {certificate['audit']['head']}"):
        assert expected in text, expected
    assert "## Exemptions (Art. 17(3))\n\n- **app-db**: table invoices retained until 2035-12-31" in text


def test_a_request_completed_late_says_so(make_runtime: MakeRuntime) -> None:
    """A request settled after its deadline has deadline_met false, and the certificate says so."""
    rt = make_runtime(stub("crm"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        request.deadline = request.received_at - timedelta(days=1)
    drain(rt)
    certificate = report.build(rt, request_id)
    assert certificate["deadline_met"] is False
    assert "**after the deadline**" in report.markdown(certificate)


def test_cli_prints_json_or_markdown(make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    """`report ID` prints the JSON certificate, `--format md` the Markdown one; an unknown id is exit 3."""
    rt = make_runtime(stub("crm"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    config, _ = str(rt.config.path), capsys.readouterr()
    assert main(["report", request_id, "--config", config]) == 0
    assert json.loads(capsys.readouterr().out)["request_id"] == request_id
    assert main(["report", request_id, "--config", config, "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("# Certificate of erasure")
    assert main(["report", "no-such-id", "--config", config]) == 3
    assert "no-such-id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["report", request_id, "--config", config, "--format", "pdf"])
    assert usage.value.code == 2
