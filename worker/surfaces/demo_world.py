"""The demo's small world: a SQLite app database, a bucket on moto's S3 server, Parquet snapshots,
a LanceDB table of support-ticket embeddings, a newsletter service reached over HTTP, a paper
archive only a person can reach, and the config naming them all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SIGNING_ENV = "ERASURE_DEMO_SIGNING_SECRET"  # the newsletter service's secret, put in the environment
SUBSCRIBERS = {"bob@example.com": 3, "user1@example.com": 1, "user4@example.com": 2}  # email -> records
CONFIG = """\
store_url = "sqlite:///state.db"
broker_url = "sqla+sqlite:///queue.db"
deadline_days = 30

[worker]
max_attempts = 3
retry_backoff_seconds = 1

[identifiers]
user_id = {{ pattern = '^[0-9]{{1,18}}$' }}
email = {{ pattern = '^[^@\\s]+@[^@\\s]+$', normalize = "lower" }}

[[resolvers]]
system = "app-db"
from = "email"
to = "user_id"
query = "SELECT id FROM users WHERE email = :email"

[[systems]]
name = "app-db"
kind = "sql"
url = "sqlite:///{root}/app.db"
  [[systems.tables]]
  name = "users"
  where = {{ id = "user_id" }}
  action = "delete"
  [[systems.tables]]
  name = "orders"
  where = {{ user_id = "user_id" }}
  action = "anonymize"
  set = {{ email = "", shipping_address = "", user_id = "null" }}
  [[systems.tables]]
  name = "order_items"
  where = {{ order_id = "orders.id" }}
  action = "delete"

[[systems]]
name = "uploads"
kind = "s3"
bucket = "user-uploads"
endpoint_url = "{endpoint}"
prefixes = ["avatars/{{user_id}}/"]
keys = ["exports/{{user_id}}.zip"]

[[systems]]
name = "clickstream"
kind = "snapshot"
location = "{root}/clickstream"
format = "parquet"
where = {{ user_id = "user_id" }}

[[systems]]
name = "support-embeddings"
kind = "vector"
backend = "lancedb"
uri = "{root}/lance"
table = "tickets"
where = {{ user_id = "user_id" }}

[[systems]]
name = "newsletter"
kind = "http"
url = "{newsletter}/subscribers/{{email}}"
method = "DELETE"
secret_env = "{signing_env}"
timeout_seconds = 5

[[systems]]
name = "paper-archive"
kind = "manual"
uses = ["user_id"]
instructions = '''
Find the customer's folder in the archive room by user id, shred the signed contract in it,
and note how many sheets went.'''
"""


def build_world(root: Path, endpoint: str, newsletter: str) -> Path:
    """The app database, the bucket, the snapshots, the embeddings and the config; the config's path."""
    _app_db(root)
    _bucket(endpoint)
    _snapshots(root)
    _embeddings(root)
    config = root / "erasure.toml"
    config.write_text(CONFIG.format(root=root, endpoint=endpoint, newsletter=newsletter, signing_env=SIGNING_ENV))
    return config


def _app_db(root: Path) -> None:
    db = sqlite3.connect(root / "app.db")
    db.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id),
                             email TEXT, shipping_address TEXT);
        CREATE TABLE order_items (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id), sku TEXT);
    """)
    for uid in range(1, 6):
        email = "bob@example.com" if uid == 2 else f"user{uid}@example.com"
        db.execute("INSERT INTO users VALUES (?, ?)", (uid, email))
        for n in range(2):
            order = uid * 10 + n
            db.execute("INSERT INTO orders VALUES (?, ?, ?, ?)", (order, uid, email, f"{uid} Main St"))
            db.execute("INSERT INTO order_items VALUES (NULL, ?, ?)", (order, f"sku-{order}"))
    db.commit()
    db.close()


def _bucket(endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="user-uploads")
    for key in ["avatars/2/a.png", "avatars/2/b.png", "avatars/3/c.png", "avatars/20/d.png",
                "exports/2.zip", "exports/3.zip"]:
        s3.put_object(Bucket="user-uploads", Key=key, Body=b"demo")


def _snapshots(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for folder, users in [("2026-10-01", [1, 2, 3, 2, 4, 5]), ("2026-11-01", [1, 4, 5, 4])]:
        (root / "clickstream" / folder).mkdir(parents=True)
        table = pa.table({"user_id": pa.array(users, pa.int64()),
                          "event": [f"click-{i}" for i in range(len(users))]})
        pq.write_table(table, root / "clickstream" / folder / "part-0.parquet")


def _embeddings(root: Path) -> None:
    import lancedb
    import pyarrow as pa

    users = [1, 2, 2, 3, 4, 5]
    flat = pa.array([float(i % 7) for i in range(8 * len(users))], pa.float32())
    table = pa.table({"user_id": pa.array(users, pa.int64()), "ticket": [f"ticket-{i}" for i in range(len(users))],
                      "vector": pa.FixedSizeListArray.from_arrays(flat, 8)})
    lancedb.connect(root / "lance").create_table("tickets", table)
