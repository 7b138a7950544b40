"""What `erasure locate` and `export` are tried on: a shop database (users, their orders anonymized, the
orders' items followed by reference), a versioned uploads bucket, clickstream snapshots in each text and
columnar format, each holding subject 42 beside neighbours 4 and 420; and fingerprints that say whether
anything in them changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from tests.helpers.config import system_table

SUBJECT, NEIGHBOURS = "42", ("4", "420")
EMAIL = "jane.doe@example.com"  # subject 42's
SHOP_TABLES = [{"name": "users", "where": {"id": "user_id"}, "action": "delete"},
               {"name": "orders", "where": {"user_id": "user_id"}, "action": "anonymize",
                "set": {"email": "", "address": "null"}},
               {"name": "order_items", "where": {"order_id": "orders.id"}, "action": "delete"}]
SHOP_COUNTS = {"users": 1, "orders": 2, "order_items": 3}  # subject 42's rows in each table


def shop(url: str) -> str:
    """The shop database filled at the URL; the TOML of its `app-db` system."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    users = sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("email", sa.String(200)))
    orders = sa.Table("orders", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("user_id", sa.Integer),
                      sa.Column("email", sa.String(200)), sa.Column("address", sa.String(200)))
    items = sa.Table("order_items", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("order_id", sa.Integer), sa.Column("sku", sa.String(50)))
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(users.insert(), [{"id": 42, "email": EMAIL}, {"id": 4, "email": "four@example.com"},
                                      {"id": 420, "email": "fourtwenty@example.com"}])
        conn.execute(orders.insert(), [{"id": 1, "user_id": 42, "email": EMAIL, "address": "1 Main St"},
                                       {"id": 2, "user_id": 42, "email": EMAIL, "address": "1 Main St"},
                                       {"id": 3, "user_id": 420, "email": "fourtwenty@example.com", "address": "x"}])
        conn.execute(items.insert(), [{"id": 1, "order_id": 1, "sku": "a"}, {"id": 2, "order_id": 1, "sku": "b"},
                                      {"id": 3, "order_id": 2, "sku": "c"}, {"id": 4, "order_id": 3, "sku": "d"}])
    engine.dispose()
    return system_table("app-db", "sql", url=url, tables=SHOP_TABLES)


def database_fingerprint(url: str) -> str:
    """A SHA-256 of every row of the shop's tables, in key order."""
    engine = sa.create_engine(url)
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in ("users", "orders", "order_items"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")):
                digest.update(repr(tuple(row)).encode())
    engine.dispose()
    return digest.hexdigest()


def uploads(s3: Any, bucket: str, endpoint: str) -> str:
    """Subject 42's avatars (a key written twice, one deleted: a delete marker) and export in a versioned
    bucket, beside neighbours' (and `exports/42.zip.bak`, which no exact key takes); the `uploads` system."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key, body in [("avatars/42/a.png", b"a1"), ("avatars/42/a.png", b"a2"), ("avatars/42/b.png", b"b1"),
                      ("exports/42.zip", b"zip"), ("avatars/420/x.png", b"x"), ("avatars/4/y.png", b"y"),
                      ("exports/42.zip.bak", b"bak")]:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.delete_object(Bucket=bucket, Key="avatars/42/b.png")
    return system_table("uploads", "s3", bucket=bucket, endpoint_url=endpoint, region="us-east-1",
                        prefixes=["avatars/{user_id}/"], keys=["exports/{user_id}.zip"])


UPLOAD_COUNTS = {"avatars/{user_id}/": {"versions": 3, "delete_markers": 1},
                 "exports/{user_id}.zip": {"versions": 1, "delete_markers": 0}}


def bucket_fingerprint(s3: Any, bucket: str) -> list[tuple[str, str, bool]]:
    """Every version and delete marker of the bucket: key, version id, whether a marker."""
    listed = s3.list_object_versions(Bucket=bucket)
    return sorted([(v["Key"], v["VersionId"], False) for v in listed.get("Versions", [])]
                  + [(m["Key"], m["VersionId"], True) for m in listed.get("DeleteMarkers", [])])


CLICKS = {"2026-10-01/part-0": [42, 7, 42], "2026-11-01/part-0": [420, 4], "2026-11-01/part-1": [42]}


def clicks(folder: Path, fmt: str) -> str:
    """Clickstream snapshots in the format (parquet, jsonl or csv): subject 42 in both folders; the
    `clickstream` system."""
    for name, ids in CLICKS.items():
        path = folder / f"{name}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        events = [f"click-{i}" for i in range(len(ids))]
        pairs = list(zip(ids, events, strict=True))
        if fmt == "parquet":
            pq.write_table(pa.table({"user_id": pa.array(ids, pa.int64()), "event": events}), path)
        elif fmt == "jsonl":
            path.write_text("".join(json.dumps({"user_id": i, "event": e}) + "\n" for i, e in pairs))
        else:
            path.write_text("user_id,event\n" + "".join(f"{i},{e}\n" for i, e in pairs))
    return system_table("clickstream", "snapshot", location=str(folder), format=fmt, where={"user_id": "user_id"})


CLICK_COUNTS = {"clickstream:2026-10-01": 2, "clickstream:2026-11-01": 1}


def folder_fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Each file under the folder: its SHA-256 and its mtime in nanoseconds."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}
