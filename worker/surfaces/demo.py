"""`erasure demo`: a small world on embedded parts (demo_world.py: a SQLite app database, moto's S3
server in-process, Parquet snapshots, LanceDB embeddings, a newsletter service over HTTP, a paper
archive a person works), a real worker process, three erasure requests and an objection to
training, the archive's tasks settled by hand, what happened to each, and the guard catching a
re-exported snapshot that brought two of those people back."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worker.config import load
from worker.engine import guard_watch, lineage, manual_tasks
from worker.engine.intake import parse_subject_args, submit
from worker.queue.dispatch import celery_runtime
from worker.runtime import Runtime
from worker.surfaces import views
from worker.surfaces.demo_service import NewsletterService
from worker.surfaces.demo_world import SIGNING_ENV, SUBSCRIBERS, build_world
from worker.surfaces.render import show_status, table

DEMO_AWS = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}
REQUESTS = [["email=Bob@Example.com"], ["user_id=3"], ["email=nobody@example.com"]]
OBJECTING = ["user_id=4"]  # objects to training use (Art. 21): the account stays, the training data goes
REEXPORT = "2026-12-01"  # a snapshot exported later from a backup that still held users 2 and 4
CLERK = "demo clerk"  # who works the paper archive's tasks
ARCHIVED = {"1", "2", "3", "4", "5"}  # the user ids with a folder in the archive room


def run() -> int:
    """Build the world, run a worker, erase three subjects and an objection, print the outcome."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("erasure demo needs moto: pip install 'erasure-worker[demo]'", file=sys.stderr)
        return 1
    os.environ.update(DEMO_AWS)
    os.environ[SIGNING_ENV] = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="erasure-demo-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    newsletter = NewsletterService(os.environ[SIGNING_ENV].encode(), SUBSCRIBERS)
    worker = None
    try:
        config_path = build_world(root, f"http://127.0.0.1:{port}", newsletter.url)
        rt = celery_runtime(load(config_path))
        lineage.add(rt, "recsys", "7", ["clickstream:2026-10-01"])
        lineage.add(rt, "ranker", "1", ["clickstream:2026-11-01"])
        lineage.add(rt, "support-bot", "2", ["support-embeddings:tickets"])
        print(f"demo world in {root}: app-db (SQLite), uploads (S3 on moto), clickstream (Parquet), "
              f"support-embeddings (LanceDB), newsletter (HTTP at {newsletter.url}), paper-archive (a person)")
        print("models: recsys 7 trained on clickstream:2026-10-01, ranker 1 on clickstream:2026-11-01, "
              "support-bot 2 on support-embeddings:tickets\n")

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
        print(f"\nnewsletter service: subscribers left {sorted(newsletter.subscribers)}, "
              f"unsigned calls refused {newsletter.refused}")
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
        newsletter.stop()
        moto.stop()


def _work_tasks(rt: Runtime) -> None:
    """The clerk works the paper archive's open tasks: looks the subject up (audited), shreds, settles."""
    for task in manual_tasks.open_tasks(rt):
        revealed = manual_tasks.reveal(rt, task.request_id, task.system, by=CLERK)
        if set(revealed.get("user_id", ())) & ARCHIVED:
            manual_tasks.done(rt, task.request_id, task.system, items=2, evidence="signed contract shredded",
                              by=CLERK)
            print(f"  {task.request_id[:8]}  {task.system:<18} erased by hand ({CLERK})")
        else:
            manual_tasks.not_found(rt, task.request_id, task.system, evidence="no folder in the archive room",
                                   by=CLERK)
            print(f"  {task.request_id[:8]}  {task.system:<18} looked for by hand, not found ({CLERK})")


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
        _work_tasks(rt)
        statuses = [views.status(rt, rid) for rid in ids]
        for status in statuses:
            for system in status["systems"]:
                key = f"{status['request_id']}/{system['system']}"
                if seen.get(key) != system["status"]:
                    seen[key] = system["status"]
                    print(f"  {status['request_id'][:8]}  {system['system']:<18} {system['status']}")
        if all(s["status"] in ("completed", "failed") for s in statuses):
            return statuses
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the demo did not finish; see {rt.config.path.parent / 'worker.log'}")
        time.sleep(0.3)
