"""The single store's ceilings on PostgreSQL: how many transactions a second append to the one audit
chain, against the same transactions without the chain, as writers are added.

    python benchmarks/store_ceiling.py [--pg-url URL] [--seconds 10] [--writers 1,2,4,8,16]

Every request's life writes the audit trail, and the trail is one hash chain: each appending
transaction takes the append lock (a transaction-scoped advisory lock) after its own rows are
flushed and holds it through its commit (worker/engine/audit.py). So appending transactions
commit one at a time, and the chain's rate is about one over the time a commit takes, however
many workers there are. Each case runs --writers threads (one connection each, the worker's own
engine and migrations, on a database of the run's own, dropped afterwards) for --seconds, each
thread committing transactions in a loop; a transaction is what a pass's record is for one
request: an UPDATE of one `system_tasks` row and one audit event. "without the chain": the
same transactions with the event inserted as a plain row, no lock, no head read. The load
average is printed before and after. Figures only; nothing is asserted. docs/scaling.md uses them.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from worker.engine import audit
from worker.store.engine import create_store_engine, migrate
from worker.store.models import Request, SystemTask, utcnow

PLAIN = sa.Table(  # the audit event's columns, as a plain table: no chain, no lock
    "plain_events", sa.MetaData(), sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("at", sa.DateTime), sa.Column("type", sa.String(40)), sa.Column("system", sa.String(100)),
    sa.Column("data", sa.JSON), sa.Column("hash", sa.String(64), unique=True))


def scratch(url: str) -> tuple[str, str]:
    """A database of this run's own on the server of `url`: its URL and its name."""
    name = f"erasure_ceiling_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop(url: str, name: str) -> None:
    """Drop the run's database."""
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def seed(engine: sa.Engine, rows: int) -> list[int]:
    """`rows` requests with one system each; the ids of their system rows."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        requests = [{"id": uuid.uuid4().hex, "subject_ref": uuid.uuid4().hex, "status": "in_progress",
                     "received_at": now, "deadline": now + timedelta(days=30)} for _ in range(rows)]
        session.execute(sa.insert(Request), requests)
        session.execute(sa.insert(SystemTask), [{"request_id": r["id"], "system": "billing", "kind": "sql",
                                                 "status": "running"} for r in requests])
        return list(session.scalars(sa.select(SystemTask.id)))


def run(engine: sa.Engine, ids: list[int], writers: int, seconds: float, chained: bool) -> float:
    """Transactions a second committed by `writers` threads for `seconds`."""
    done = [0] * writers
    stop = time.monotonic() + seconds

    def write(n: int) -> None:
        mine = ids[n::writers]
        i = 0
        while time.monotonic() < stop:
            task_id = mine[i % len(mine)]
            with Session(engine) as session, session.begin():
                session.execute(sa.update(SystemTask).where(SystemTask.id == task_id).values(items_erased=i))
                if chained:
                    audit.record(session, "system.erased", None, "billing", items=i)
                else:
                    session.execute(PLAIN.insert().values(at=utcnow(), type="system.erased", system="billing",
                                                          data={"items": i}, hash=uuid.uuid4().hex * 2))
            i += 1
        done[n] = i

    began = time.monotonic()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - began)


def main() -> None:
    """Run every case and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default=os.environ.get("ERASURE_BENCH_PG_URL",
                                                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--writers", default="1,2,4,8,16")
    args = parser.parse_args()
    url, name = scratch(args.pg_url)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        engine = create_store_engine(url)
        migrate(engine)
        PLAIN.metadata.create_all(engine)
        ids = seed(engine, 2000)
        print(f"{'writers':>8} {'chained tx/s':>13} {'plain tx/s':>11} {'chained/plain':>14}")
        for writers in (int(w) for w in args.writers.split(",")):
            chained = run(engine, ids, writers, args.seconds, True)
            plain = run(engine, ids, writers, args.seconds, False)
            print(f"{writers:>8} {chained:>13.0f} {plain:>11.0f} {chained / plain:>14.2f}")
        with engine.connect() as conn:
            fsync = conn.exec_driver_sql("SHOW synchronous_commit").scalar_one()
        print(f"synchronous_commit = {fsync}")
        engine.dispose()
    finally:
        drop(args.pg_url, name)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
