"""`erasure locate`: each kind counts, against its real part, what an erasure would take, changing
nothing (fingerprints before and after), and the erasure that follows takes exactly that; the scope,
the resolvers and the lineage are applied as a request's would be; one audit event is all it records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
import pytest
import redis
import sqlalchemy as sa
from qdrant_client import QdrantClient, models
from sqlalchemy import func, select

from connectors.base import CANNOT_LOOK
from tests.helpers import (
    CLICK_COUNTS,
    EMAIL,
    NO_BATCH_WAIT,
    SHOP_COUNTS,
    SHOP_TABLES,
    SUBJECT,
    TAX,
    UPLOAD_COUNTS,
    MakeRuntime,
    bucket_fingerprint,
    clicks,
    database_fingerprint,
    erased,
    folder_fingerprint,
    resolver,
    service_raw,
    shop,
    start_service,
    stub,
    system_table,
    uploads,
)
from worker.engine import intake, lineage, locate
from worker.errors import InputError, RefusedError
from worker.runtime import Runtime
from worker.store.models import AuditEvent, ModelFlag, Request, SystemTask
from worker.surfaces import views


def looked(rt: Runtime, subject: dict[str, Any] | None = None, scope: str | None = None) -> dict[str, dict[str, Any]]:
    """`locate` of a subject (user 42 unless told), its systems by name as `--json` prints them."""
    found = locate.locate(rt, subject or {"user_id": SUBJECT}, scope)
    return {s["system"]: s for s in found.to_json()["systems"]}


def erased_at(rt: Runtime, system: str) -> tuple[int, dict[str, Any]]:
    """Submit and play user 42's erasure; the system's items erased and its evidence."""
    request_id = erased(rt, SUBJECT)
    status = {s["system"]: s for s in views.status(rt, request_id)["systems"]}[system]
    return status["items_erased"], views.evidence(rt, request_id)[system]


def test_sql_counts_each_table_as_the_erasure_takes_it(make_runtime: MakeRuntime, sql_url: str) -> None:
    """On SQLite, PostgreSQL and MariaDB: rows per table (order items followed through the orders'
    ids), no row changed by the look, and the erasure then takes exactly those rows, table by table."""
    rt = make_runtime(shop(sql_url))
    before = database_fingerprint(sql_url)
    found = looked(rt)["app-db"]
    assert (found["looked"], found["counts"], found["items"]) == (True, {"tables": SHOP_COUNTS}, 6)
    assert database_fingerprint(sql_url) == before
    items, evidence = erased_at(rt, "app-db")
    assert items == found["items"]
    assert {t["table"]: t["rows"] for t in evidence["tables"]} == found["counts"]["tables"]


def test_sql_counts_masks_and_shared_rows_kept(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A delete_unreferenced table with a masked column: the address only the subject's deliveries used
    (deleted) and the one another customer's delivery still uses (anonymized) both count, as erase counts."""
    url = f"sqlite:///{tmp_path}/app.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE addresses (id INTEGER PRIMARY KEY, street TEXT, city TEXT)")
        conn.exec_driver_sql("CREATE TABLE deliveries (id INTEGER PRIMARY KEY, user_id INTEGER, "
                             "address_id INTEGER REFERENCES addresses(id))")
        conn.exec_driver_sql("INSERT INTO addresses VALUES (1, 'Shared St', 'Ghent'), (2, 'Own St', 'Ghent'), "
                             "(3, 'Other St', 'Liege')")
        conn.exec_driver_sql("INSERT INTO deliveries VALUES (1, 42, 1), (2, 42, 2), (3, 7, 1), (4, 7, 3)")
    engine.dispose()
    rt = make_runtime(system_table("app-db", "sql", url=url, tables=[
        {"name": "deliveries", "where": {"user_id": "user_id"}, "action": "delete"},
        {"name": "addresses", "where": {"id": "deliveries.address_id"}, "action": "delete_unreferenced",
         "set": {"street": {"hash": True}, "city": "null"}}]))
    found = looked(rt)["app-db"]
    assert found["counts"]["tables"] == {"deliveries": 2, "addresses": 2}
    items, evidence = erased_at(rt, "app-db")
    assert items == found["items"] == 4
    assert {t["table"]: t["rows"] for t in evidence["tables"]} == found["counts"]["tables"]


def test_sql_counts_a_retained_table_apart(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A table kept by law is counted as kept, not as taken, and the erasure takes the rest."""
    url = f"sqlite:///{tmp_path}/app.db"
    shop(url)
    tables = [dict(SHOP_TABLES[0], retain=TAX), *SHOP_TABLES[1:]]
    rt = make_runtime(system_table("app-db", "sql", url=url, tables=tables))
    found = looked(rt)["app-db"]
    assert found["counts"] == {"tables": {"orders": 2, "order_items": 3}, "retained": {"users": 1}}
    assert erased_at(rt, "app-db")[0] == found["items"] == 5


def test_s3_counts_versions_and_delete_markers_per_template(make_runtime: MakeRuntime, s3_client: Any, bucket: str,
                                                             s3_endpoint: str) -> None:
    """Every version and delete marker under the subject's prefix and at its exact key, none of the
    neighbours' nor `42.zip.bak`; the bucket unchanged by the look; the erasure deletes as many."""
    rt = make_runtime(uploads(s3_client, bucket, s3_endpoint))
    before = bucket_fingerprint(s3_client, bucket)
    found = looked(rt)["uploads"]
    assert found["counts"] == {"bucket": bucket, "templates": UPLOAD_COUNTS} and found["items"] == 5
    assert bucket_fingerprint(s3_client, bucket) == before
    assert erased_at(rt, "uploads")[0] == found["items"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_snapshots_are_counted_and_the_models_they_fed_named(make_runtime: MakeRuntime, tmp_path: Path,
                                                              fmt: str) -> None:
    """Rows and files per snapshot, no file's bytes or mtime changed, the model trained on one of them
    named as the erasure would flag it (and no flag written); the erasure removes as many rows and flags it."""
    folder = tmp_path / "clicks"
    rt = make_runtime(clicks(folder, fmt), worker=NO_BATCH_WAIT)
    lineage.add(rt, "ranker", "1", ["clickstream:2026-10-01"])
    before = folder_fingerprint(folder)
    located = locate.locate(rt, {"user_id": SUBJECT})
    found = {s["system"]: s for s in located.to_json()["systems"]}["clickstream"]
    assert {snapshot: n["rows"] for snapshot, n in found["counts"]["snapshots"].items()} == CLICK_COUNTS
    assert found["counts"]["snapshots"]["clickstream:2026-10-01"]["files"] == [f"2026-10-01/part-0.{fmt}"]
    assert located.models == [{"model": "ranker", "version": "1", "snapshots": ["clickstream:2026-10-01"]}]
    assert folder_fingerprint(folder) == before
    with rt.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ModelFlag)) == 0
    request_id = erased(rt, SUBJECT)
    status = views.status(rt, request_id)
    assert status["systems"][0]["items_erased"] == found["items"] == 3
    assert status["flagged_models"] == located.models


def test_redis_counts_per_template_as_the_erasure_evidence_has_it(make_runtime: MakeRuntime, redis_url: str) -> None:
    """Exact keys, scanned prefixes, set members and hash fields, counted as the erase's evidence lays
    them out (a key reached twice counted once), nothing touched; then the evidence is the same."""
    with redis.Redis.from_url(redis_url) as db:
        db.mset({"s:42": "a", "s:420": "b", "c:42:1": "c", "c:42:2": "d", "c:420:1": "e"})
        db.sadd("online", "42", "4")
        db.hset("profiles", mapping={"42": "x", "4": "y"})
        dumped = {key: db.dump(key) for key in db.keys("*")}
    rt = make_runtime(system_table("cache", "redis", url=redis_url, keys=["s:{user_id}", "c:{user_id}:1"],
                                   scan=["c:{user_id}:"], sets=[{"key": "online", "member": "{user_id}"}],
                                   hashes=[{"key": "profiles", "field": "{user_id}"}]))
    found = looked(rt)["cache"]
    assert found["items"] == 5
    with redis.Redis.from_url(redis_url) as db:
        assert {key: db.dump(key) for key in db.keys("*")} == dumped
    items, evidence = erased_at(rt, "cache")
    assert items == found["items"]
    assert {section: evidence[section] for section in found["counts"]} == found["counts"]


def test_vector_tables_are_counted_as_the_snapshot_they_are(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A LanceDB table: the subject's rows as the snapshot `SYSTEM:TABLE`, no version added by the look,
    and the erasure removes as many."""
    vectors = pa.list_(pa.float32(), 2)
    table = lancedb.connect(tmp_path / "lance").create_table("docs", pa.table({
        "user_id": pa.array([42, 420, 42, 4], pa.int64()), "vector": pa.array([[0.1, 0.2]] * 4, vectors)}))
    versions = len(table.list_versions())
    rt = make_runtime(system_table("embeddings", "vector", backend="lancedb", uri=str(tmp_path / "lance"),
                                   table="docs", where={"user_id": "user_id"}), worker=NO_BATCH_WAIT)
    found = looked(rt)["embeddings"]
    assert found["counts"] == {"snapshots": {"embeddings:docs": {"files": [], "rows": 2}}}
    assert len(table.list_versions()) == versions and table.count_rows() == 4
    assert erased_at(rt, "embeddings")[0] == found["items"] == 2


def test_qdrant_points_are_counted_and_left(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A Qdrant collection (local mode): the subject's points counted, still all there after the look,
    and the erasure removes as many."""
    folder = str(tmp_path / "qdrant")
    client = QdrantClient(path=folder)
    client.create_collection("docs", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert("docs", [models.PointStruct(id=i + 1, vector=[0.1, 0.2], payload={"user_id": uid})
                           for i, uid in enumerate([42, 420, 42, 4, 42])])
    client.close()
    rt = make_runtime(system_table("embeddings", "vector", backend="qdrant", path=folder, collection="docs",
                                   where={"user_id": "user_id"}), worker=NO_BATCH_WAIT)
    found = looked(rt)["embeddings"]
    assert found["items"] == 3
    assert rt.connector("embeddings").verify(intake.clean_subject(rt.config, {"user_id": SUBJECT})) == 3
    assert erased_at(rt, "embeddings")[0] == 3


def test_http_and_manual_systems_say_they_cannot_look(make_runtime: MakeRuntime,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A service that would have to be called, and a system a person erases, are not asked: each says
    it cannot look without acting, and the service receives no call."""
    service = start_service(monkeypatch)
    try:
        raw = service_raw(service.url)
        rt = make_runtime(system_table(**raw) + system_table("desk", "manual", uses=["user_id"],
                                                             instructions="Shred the paper file.") + stub("crm"))
        found = looked(rt)
        for name in ("billing", "desk"):
            assert (found[name]["looked"], found[name]["items"], found[name]["note"]) == (False, None, CANNOT_LOOK)
        assert (found["crm"]["looked"], found["crm"]["items"]) == (True, 1)
        assert service.calls == []
    finally:
        service.stop()


def test_training_scope_limits_the_systems_as_a_request(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """With scope training, a system a training objection would skip is not looked at, and says why."""
    rt = make_runtime(shop(f"sqlite:///{tmp_path}/app.db") + clicks(tmp_path / "clicks", "jsonl"))
    found = looked(rt, scope="training")
    assert (found["app-db"]["looked"], found["app-db"]["note"]) == (False, "skipped: scope: training")
    assert found["clickstream"]["items"] == 3


def test_an_email_is_resolved_to_the_user_id_it_stands_for(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """The resolvers run, reading only: an email finds the rows keyed by the user id it resolves to."""
    url = f"sqlite:///{tmp_path}/app.db"
    rt = make_runtime(resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email") + shop(url))
    located = locate.locate(rt, {"email": EMAIL.upper()})
    assert located.identifier_types == {"email": 1, "user_id": 1}
    assert located.systems[0].preview is not None and located.systems[0].preview.counts == {"tables": SHOP_COUNTS}


def test_one_audit_event_with_counts_is_all_it_records(make_runtime: MakeRuntime, tmp_path: Path,
                                                       json_logs: Any) -> None:
    """No request, no system row: one `subject.located` event with the subject's keyed ref and counts, and
    neither it nor any log line holds the identifier."""
    url = f"sqlite:///{tmp_path}/app.db"
    rt = make_runtime(resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email") + shop(url))
    locate.locate(rt, {"email": EMAIL})
    with rt.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Request)) == 0
        assert session.scalar(select(func.count()).select_from(SystemTask)) == 0
        events = session.scalars(select(AuditEvent)).all()
    assert [(e.type, e.request_id) for e in events] == [("subject.located", None)]
    assert events[0].data["subject_ref"] == rt.subject_ref({"email": [EMAIL]})
    assert events[0].data["items"] == {"app-db": 6}
    logged = json.dumps(json_logs())
    assert "subject.located" in logged
    assert EMAIL not in json.dumps(events[0].data) and EMAIL not in logged and "Main St" not in logged


def test_bad_input_is_refused_and_nothing_recorded(make_runtime: MakeRuntime) -> None:
    """A value its type's pattern refuses, or a type no system knows, is an InputError; no audit event."""
    rt = make_runtime(stub("crm"))
    for subject in ({"user_id": "4x2"}, {"shoe_size": "42"}, {}):
        with pytest.raises(InputError):
            locate.locate(rt, subject)
    with pytest.raises(InputError):
        locate.locate(rt, {"user_id": SUBJECT}, "everything")
    with rt.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_a_system_that_fails_says_why_and_the_others_answer(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A system whose table is missing answers with its error (naming the table, never the value); the
    others still answer."""
    url = f"sqlite:///{tmp_path}/app.db"
    shop(url)
    rt = make_runtime(system_table("app-db", "sql", url=url, tables=[
        {"name": "customers", "where": {"id": "user_id"}, "action": "delete"}]) + stub("crm"))
    found = looked(rt)
    assert found["app-db"]["looked"] is False and "customers" in found["app-db"]["error"]
    assert SUBJECT not in found["app-db"]["error"].replace("app-db", "")
    assert found["crm"]["items"] == 1


def test_a_received_request_is_previewed_from_its_sealed_identifiers(make_runtime: MakeRuntime,
                                                                      tmp_path: Path) -> None:
    """A request not yet erased is previewed with its own subject and scope, recorded as its audit
    event and left received; a completed one is refused."""
    rt = make_runtime(shop(f"sqlite:///{tmp_path}/app.db"))
    request_id = intake.submit(rt, {"user_id": SUBJECT}).request_id
    located = locate.locate_request(rt, request_id)
    assert located.items == 6 and located.subject_ref == views.status(rt, request_id)["subject_ref"]
    assert views.status(rt, request_id)["status"] == "received"
    with rt.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.request_id == request_id, AuditEvent.type == "subject.located")) == 1
    done = erased(rt, "4")
    with pytest.raises(RefusedError):
        locate.locate_request(rt, done)
