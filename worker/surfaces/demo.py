"""`erasure demo`: a small world on embedded parts (a SQLite app database, moto's S3
server in-process, Parquet snapshots, two model versions), a real worker process, three
erasure requests and an objection to training, what happened to each, and the guard catching
a re-exported snapshot that brought two of those people back."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worker.config import load
from worker.engine import guard_watch, lineage
from worker.engine.intake import parse_subject_args, submit
from worker.queue.dispatch import celery_runtime
from worker.runtime import Runtime
from worker.surfaces import views
from worker.surfaces.render import show_status, table

DEMO_AWS = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}
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
"""
REQUESTS = [["email=Bob@Example.com"], ["user_id=3"], ["email=nobody@example.com"]]
OBJECTING = ["user_id=4"]  # objects to training use (Art. 21): the account stays, the training data goes
REEXPORT = "2026-12-01"  # a snapshot exported later from a backup that still held users 2 and 4


def build_world(root: Path, endpoint: str) -> Path:
    """The app database, the bucket, the snapshots and the config; returns the config path."""
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

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

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="user-uploads")
    for key in ["avatars/2/a.png", "avatars/2/b.png", "avatars/3/c.png", "avatars/20/d.png",
                "exports/2.zip", "exports/3.zip"]:
        s3.put_object(Bucket="user-uploads", Key=key, Body=b"demo")

    for folder, users in [("2026-10-01", [1, 2, 3, 2, 4, 5]), ("2026-11-01", [1, 4, 5, 4])]:
        (root / "clickstream" / folder).mkdir(parents=True)
        table = pa.table({"user_id": pa.array(users, pa.int64()),
                          "event": [f"click-{i}" for i in range(len(users))]})
        pq.write_table(table, root / "clickstream" / folder / "part-0.parquet")

    config = root / "erasure.toml"
    config.write_text(CONFIG.format(root=root, endpoint=endpoint))
    return config


def run() -> int:
    """Build the world, run a worker, erase three subjects, print the outcome."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("erasure demo needs moto: pip install 'erasure-worker[demo]'", file=sys.stderr)
        return 1
    os.environ.update(DEMO_AWS)
    root = Path(tempfile.mkdtemp(prefix="erasure-demo-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    worker = None
    try:
        config_path = build_world(root, f"http://127.0.0.1:{port}")
        rt = celery_runtime(load(config_path))
        lineage.add(rt, "recsys", "7", ["clickstream:2026-10-01"])
        lineage.add(rt, "ranker", "1", ["clickstream:2026-11-01"])
        print(f"demo world in {root}: app-db (SQLite), uploads (S3 on moto), clickstream (Parquet)")
        print("models: recsys 7 trained on clickstream:2026-10-01, ranker 1 on clickstream:2026-11-01\n")

        log = open(root / "worker.log", "w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker", "worker", "--config", str(config_path), "--concurrency", "2"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ERASURE_LOG_FORMAT": "json"},
            start_new_session=True,
        )
        ids = []
        for args in REQUESTS:
            done = submit(rt, parse_subject_args(args), requested_by="demo")
            ids.append(done.request_id)
            print(f"submitted {done.request_id}  ({args[0].split('=')[0]}=…)")
        objection = submit(rt, parse_subject_args(OBJECTING), requested_by="demo", scope="training").request_id
        ids.append(objection)
        print(f"submitted {objection}  (user_id=…, scope training: an objection to training use)")
        statuses = _wait(rt, ids, worker, timeout=90)
        print()
        for status in statuses:
            print(show_status(status), end="\n\n")
        flagged = views.models(rt, flagged_only=True)
        print("flagged models:")
        print(table(["MODEL", "VERSION", "REQUEST", "SNAPSHOTS"],
                    [[m["model"], m["version"], f["request_id"], " ".join(f["snapshots"])]
                     for m in flagged for f in m["flags"]]))
        caught = _objection_and_guard(rt, root)
        print(f"\nworker log: {root / 'worker.log'}")
        rt.close()
        return 0 if all(s["status"] == "completed" for s in statuses) and caught else 1
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        moto.stop()


def _objection_and_guard(rt: Runtime, root: Path) -> bool:
    """Show what the objection kept and took, then a re-export bringing users 2 and 4 back, caught by
    the guard's watch; whether it was."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    db = sqlite3.connect(root / "app.db")
    kept = db.execute("SELECT count(*) FROM users WHERE id = 4").fetchone()[0]
    db.close()
    clicks = sum(pq.read_table(path).column("user_id").to_pylist().count(4)
                 for path in sorted((root / "clickstream").glob("*/*.parquet")))
    print(f"\nthe objection (user 4): account kept in app-db ({kept} row), clicks left in clickstream: {clicks}")

    folder = root / "clickstream" / REEXPORT
    folder.mkdir()
    pq.write_table(pa.table({"user_id": pa.array([1, 2, 4, 5, 4], pa.int64()),
                             "event": [f"click-{i}" for i in range(5)]}), folder / "part-0.parquet")
    print(f"re-exported clickstream:{REEXPORT} from a backup: users 1, 2, 4, 5, 4")
    looked = guard_watch.look(rt)
    rows = looked.caught.get(f"clickstream:{REEXPORT}", 0)
    left = pq.read_table(folder / "part-0.parquet").column("user_id").to_pylist()
    print(f"guard caught {rows} row(s) of guarded subjects in clickstream:{REEXPORT} and erased them; "
          f"users left there: {', '.join(map(str, left))}")
    return rows == 3 and left == [1, 5] and kept == 1 and clicks == 0


def _wait(rt: Runtime, ids: list[str], worker: subprocess.Popen, timeout: float) -> list[dict]:  # type: ignore[type-arg]
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        statuses = [views.status(rt, rid) for rid in ids]
        for status in statuses:
            for system in status["systems"]:
                key = f"{status['request_id']}/{system['system']}"
                if seen.get(key) != system["status"]:
                    seen[key] = system["status"]
                    print(f"  {status['request_id'][:8]}  {system['system']:<12} {system['status']}")
        if all(s["status"] in ("completed", "failed") for s in statuses):
            return statuses
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the demo did not finish; see {rt.config.path.parent / 'worker.log'}")
        time.sleep(0.3)
