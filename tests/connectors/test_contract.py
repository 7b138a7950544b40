"""The contract every connector kind keeps, checked on each against its real part:
erase removes the subject and only the subject, verify sees what is left, a second erase
finds nothing, evidence is JSON without the identifier's value."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import lancedb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from connectors import registry
from connectors.base import Connector, Subject
from connectors.errors import PermanentError
from tests.helpers import (
    http_connector,
    manual_connector,
    redis_connector,
    s3_connector,
    service_raw,
    snapshot_connector,
    sql_connector,
    start_service,
    stub_connector,
    vector_connector,
)

SUBJECT, NEIGHBOUR = "987654", "9876540"


def sql_world(tmp_path: Path, request: pytest.FixtureRequest) -> Connector:
    """A SQLite table holding the subject and a neighbour whose id starts the same."""
    db = sqlite3.connect(tmp_path / "app.db")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?)", [(SUBJECT, "a@x"), (NEIGHBOUR, "b@x"), (98765, "c@x")])
    db.commit()
    db.close()
    return sql_connector({"name": "app-db", "kind": "sql", "url": f"sqlite:///{tmp_path}/app.db",
                          "tables": [{"name": "users", "where": {"id": "user_id"}, "action": "delete"}]})


def s3_world(tmp_path: Path, request: pytest.FixtureRequest) -> Connector:
    """A bucket with the subject's prefix beside a neighbour's."""
    client, bucket = request.getfixturevalue("s3_client"), request.getfixturevalue("bucket")
    for key in [f"u/{SUBJECT}/a", f"u/{NEIGHBOUR}/b", f"u/{SUBJECT}0/c"]:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    return s3_connector({"name": "uploads", "kind": "s3", "bucket": bucket,
                         "endpoint_url": request.getfixturevalue("s3_endpoint"), "prefixes": ["u/{user_id}/"]})


def snapshot_world(tmp_path: Path, request: pytest.FixtureRequest) -> Connector:
    """A Parquet snapshot with the subject's rows among a neighbour's."""
    (tmp_path / "snaps" / "2026-01-01").mkdir(parents=True)
    ids = [int(SUBJECT), int(NEIGHBOUR), int(SUBJECT), 98765]
    pq.write_table(pa.table({"user_id": pa.array(ids, pa.int64())}), tmp_path / "snaps" / "2026-01-01" / "p.parquet")
    return snapshot_connector({"name": "clicks", "kind": "snapshot", "location": str(tmp_path / "snaps"),
                               "where": {"user_id": "user_id"}})


def redis_world(tmp_path: Path, request: pytest.FixtureRequest) -> Connector:
    """A Redis database with the subject's keys, prefix and set member beside a neighbour's."""
    url = request.getfixturevalue("redis_url")
    with redis.Redis.from_url(url) as db:
        db.mset({f"s:{SUBJECT}": "a", f"s:{NEIGHBOUR}": "b", f"c:{SUBJECT}:1": "c", f"c:{SUBJECT}:2": "d",
                 f"c:{NEIGHBOUR}:1": "e", f"c:{SUBJECT}": "f"})
        db.sadd("online", SUBJECT, NEIGHBOUR)
    return redis_connector({"name": "cache", "kind": "redis", "url": url, "keys": ["s:{user_id}"],
                            "scan": ["c:{user_id}:"], "sets": [{"key": "online", "member": "{user_id}"}]})


def http_world(tmp_path: Path, request: pytest.FixtureRequest) -> Connector:
    """A fake internal service on a loopback port, holding the subject's records and a neighbour's."""
    service = start_service(request.getfixturevalue("monkeypatch"))
    request.addfinalizer(service.stop)
    service.records = {SUBJECT: ["a", "b"], NEIGHBOUR: ["c"]}
    return http_connector(service_raw(service.url, verify_url=f"{service.url}/users/{{user_id}}/records"))


def vector_world(tmp_path: Path, request: pytest.FixtureRequest) -> Connector:
    """A LanceDB table with the subject's vectors in two fragments beside a neighbour's."""
    vectors = pa.list_(pa.float32(), 2)
    table = lancedb.connect(tmp_path / "lance").create_table("docs", pa.table({
        "user_id": pa.array([int(SUBJECT), int(NEIGHBOUR), 98765], pa.int64()),
        "vector": pa.array([[0.1, 0.2]] * 3, vectors)}))
    table.add(pa.table({"user_id": pa.array([int(SUBJECT)], pa.int64()), "vector": pa.array([[0.3, 0.4]], vectors)}))
    return vector_connector({"name": "embeddings", "kind": "vector", "backend": "lancedb",
                             "uri": str(tmp_path / "lance"), "table": "docs", "where": {"user_id": "user_id"}})


def stub_world(tmp_path: Path, request: pytest.FixtureRequest) -> Connector:
    """The in-package stub."""
    return stub_connector({"name": "fake", "kind": "stub", "uses": ["user_id"], "items": 2})


def manual_world(tmp_path: Path, request: pytest.FixtureRequest) -> Connector:
    """A system a person erases: there is nothing the worker could touch."""
    return manual_connector({"name": "desk", "kind": "manual", "instructions": "Delete the customer's tickets."})


BY_PEOPLE = {"manual"}  # kinds a person erases: the worker never calls their erase (see the test below)
WORLDS: dict[str, Callable[[Path, pytest.FixtureRequest], Connector]] = {
    "sql": sql_world, "s3": s3_world, "snapshot": snapshot_world, "stub": stub_world,
    "redis": redis_world, "http": http_world, "vector": vector_world, "manual": manual_world,
}


def test_every_kind_has_a_contract_world() -> None:
    """A kind installed here (an entry point of `erasure.connectors`) cannot be added without joining
    this contract test."""
    assert set(WORLDS) == set(registry.kinds())


@pytest.mark.parametrize("kind", sorted(set(registry.kinds()) - BY_PEOPLE))
def test_connector_contract(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Erase takes the subject and only the subject, once; verify and evidence agree."""
    subject, neighbour = Subject({"user_id": (SUBJECT,)}), Subject({"user_id": (NEIGHBOUR,)})
    with WORLDS[kind](tmp_path, request) as connector:
        before = connector.verify(subject)
        neighbour_before = connector.verify(neighbour)
        outcome = connector.erase(subject)

        assert before > 0
        assert outcome.items_erased == before
        assert connector.verify(subject) == 0
        assert connector.verify(neighbour) == neighbour_before
        assert connector.erase(subject).items_erased == 0
        assert SUBJECT not in json.dumps(outcome.evidence)


@pytest.mark.parametrize("kind", sorted(BY_PEOPLE))
def test_a_kind_people_erase_refuses_to_erase_or_verify(kind: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    """A kind a person erases never pretends to: erase and verify fail for good, naming no value."""
    with WORLDS[kind](tmp_path, request) as connector:
        for call in (connector.erase, connector.verify):
            with pytest.raises(PermanentError) as refused:
                call(Subject({"user_id": (SUBJECT,)}))
            assert "erasure tasks" in str(refused.value) and SUBJECT not in str(refused.value)


@pytest.mark.parametrize("kind", sorted(registry.kinds()))
def test_preview_counts_what_erase_takes(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A kind that can look counts, changing nothing, exactly the items erase then takes, and its counts
    hold no value; one that cannot look says so."""
    subject = Subject({"user_id": (SUBJECT,)})
    with WORLDS[kind](tmp_path, request) as connector:
        preview = connector.preview(subject)
        if not preview.looked:
            assert preview.note and preview.items == 0
            return
        assert connector.verify(subject) == preview.items > 0
        assert connector.erase(subject).items_erased == preview.items
        assert SUBJECT not in json.dumps(dict(preview.counts))
