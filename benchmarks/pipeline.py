"""Load: erasure requests per second through real worker processes, against bare Celery on the same broker.

    python benchmarks/pipeline.py [--requests 5000] [--embedded-requests 500] [--burst 10000]

(a quick run: --requests 200 --embedded-requests 100 --burst 300). Needs RabbitMQ with `rabbitmqctl`
on this machine and PostgreSQL (--amqp-url, --pg-url). Four runs, one after the other:

1. erasure on RabbitMQ + PostgreSQL: a RabbitMQ vhost and a PostgreSQL database of the run's own
   (both removed afterwards), a config of three stub systems (no I/O), two `erasure worker`
   processes at their defaults (two threads each, prefetch 1, late acks, publisher confirms; no
   reconciler, so a request completes by its own messages or not at all), and --requests
   requests submitted by `intake.submit` from --publishers threads of one process. The store
   keeps times to the second, so each request's submit time is taken by the submitting thread
   and its completion time is that of the worker's `request.completed` log event. The window
   runs from the first submit to the last completion; p50/p99 are of completion - submit. Lost =
   submitted - completed - failed, once nothing has settled for --stall seconds.
2. bare Celery on the same vhost: the erasure worker's Celery app and settings (the same
   pool, threads, prefetch, acks, confirms, durable queue) with one no-op task on a queue of
   its own, two worker processes, and 4 x --requests tasks, since a request alone is four tasks
   (`erasure.start` and one `erasure.erase_system` per system), published from as many threads.
   Under load erasure runs fewer (a start's group shares one erase message per system); the
   comparison is of work done, a request against the four no-op tasks it would be alone.
   A no-op leaves no trace, and a result backend would cost more than the task, so each task
   does one thing: it inserts (published, done) into an UNLOGGED table of the run's database
   (one round trip, no WAL flush). The window runs from the first publish to the last done;
   p50/p99 are per task.
3. the embedded default: SQLite store and kombu's sqla+sqlite broker, one `erasure worker`
   (with its built-in reconciler, as the embedded default runs), --embedded-requests requests.
4. a burst (--burst requests, 0 skips it): on a vhost and a database of its own, the requests are
   all submitted at once while no worker runs (the backlog a vendor's account closure or a first
   run over a year of tickets leaves: every request recorded, every start message queued); then
   the two workers of run 1 are started and the clock runs from their launch to the last
   `request.completed`. The store's transactions per request are PostgreSQL's xact_commit deltas
   for the run's database: intake's (read after the submitting process has exited) and the
   workers' (read after they have exited, less this script's own polls), each divided by the
   requests; and the workers' transactions ended by ROLLBACK (a read on a bare SQLAlchemy
   connection, as a start that finds its request started along by another makes).

The target compares task rates: erasure's tasks/s (4 a request) against at least half of bare
Celery's, which is the same as requests/s against bare tasks/s / 4 (its request-equivalent).
Also shown: worker CPU per task (/proc), store transactions per request (pg_stat_database,
read once the workers have exited), how busy the machine's cores were in the window, and the
load average before and after. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

TASKS_PER_REQUEST = 4  # erasure.start, then erasure.erase_system for each of the three systems (alone)
SYSTEMS = ("billing", "crm", "tickets")
THREADS = 2  # `erasure worker --concurrency` default, given to both kinds of worker
BARE_QUEUE = "bench.noop"
SUCCEEDED = re.compile(r"Task (erasure\.[a-z_]+)\[[0-9a-f-]+\] succeeded")
TARGET = 0.5
BENCH_KEY = "erasure-benchmark-key-not-secret-0123456789"  # ERASURE_SECRET_KEY (32+ characters): no key file
CONFIG = """store_url = "{store}"
broker_url = "{broker}"
[identifiers]
user_id = {{ pattern = '^[0-9]{{1,18}}$' }}
""" + "".join(f'[[systems]]\nname = "{name}"\nkind = "stub"\nuses = ["user_id"]\n' for name in SYSTEMS)


@dataclass
class Run:
    """What one run measured."""

    name: str
    requests: int | None  # None for bare Celery, whose unit is the task
    tasks: int
    done: int
    failed: int
    seconds: float
    latencies: list[float]
    worker_cpu: float = 0.0
    transactions: int | None = None
    busy: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """What was sent and never finished, failed or not."""
        return (self.requests if self.requests is not None else self.tasks) - self.done - self.failed

    @property
    def rate(self) -> float:
        """Finished units (requests, or tasks for bare Celery) per second."""
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def task_rate(self) -> float:
        """Finished tasks per second."""
        return self.rate * (TASKS_PER_REQUEST if self.requests is not None else 1)


def shell(*command: str) -> str:
    """Run a command; its output, or SystemExit with its error."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg takes it."""
    from sqlalchemy import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def vhost(amqp_url: str, name: str) -> Iterator[str]:
    """A RabbitMQ vhost of the run's own for the URL's user; its broker URL."""
    parts = urlsplit(amqp_url)
    shell("rabbitmqctl", "-q", "add_vhost", name)
    try:
        shell("rabbitmqctl", "-q", "set_permissions", "-p", name, parts.username or "guest", ".*", ".*", ".*")
        yield urlunsplit(parts._replace(path="/" + quote(name, safe="")))
    finally:
        shell("rabbitmqctl", "-q", "delete_vhost", name)


@contextmanager
def database(pg_url: str, name: str) -> Iterator[str]:
    """A PostgreSQL database of the run's own; its store URL."""
    import psycopg
    from sqlalchemy import make_url

    with psycopg.connect(libpq(pg_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_url).set(drivername="postgresql+psycopg", database=name).render_as_string(False)
    finally:
        with psycopg.connect(libpq(pg_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def committed(store_url: str) -> int:
    """Transactions committed in the store's database so far (PostgreSQL's statistics)."""
    return transactions(store_url)[0]


def transactions(store_url: str) -> tuple[int, int]:
    """Transactions committed, and rolled back, in the store's database so far (PostgreSQL's statistics;
    SQLAlchemy ends a read on a bare connection with a ROLLBACK)."""
    import psycopg
    from sqlalchemy import make_url

    name = make_url(store_url).database
    with psycopg.connect(libpq(store_url), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s",
                           (name,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cores_busy() -> tuple[float, float]:
    """The machine's busy and total CPU time so far, summed over cores."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


class Workers:
    """Worker processes, each with its log in a folder; stopped with SIGTERM to their group."""

    def __init__(self, commands: list[list[str]], folder: Path, role: str) -> None:
        self.logs = [folder / f"{role}-worker-{i}.log" for i in range(len(commands))]
        self.procs = []
        for command, log in zip(commands, self.logs, strict=True):
            with open(log, "w") as out:
                self.procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    def wait_ready(self, timeout: float = 120) -> None:
        """Until each has logged Celery's `ready.`; SystemExit with its log if one dies or is late."""
        deadline = time.monotonic() + timeout
        for proc, log in zip(self.procs, self.logs, strict=True):
            while 'ready."' not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"a worker did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)

    def cpu(self) -> float:
        """CPU seconds the workers have used so far."""
        return sum(cpu_seconds(proc.pid) for proc in self.procs)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 60 s."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def erasure_worker(config: Path) -> list[str]:
    """The command of one `erasure worker` at its defaults."""
    return [sys.executable, "-m", "worker", "worker", "--config", str(config), f"--concurrency={THREADS}"]


def bare_worker(config: Path) -> list[str]:
    """The command of one bare Celery worker (this script, told to be one)."""
    return [sys.executable, __file__, "--bare-worker", str(config)]


def bare_app(config_path: Path) -> Any:
    """The erasure worker's Celery app and settings, with one no-op task on a queue of its own."""
    import psycopg
    from kombu import Queue

    from worker.config import load
    from worker.queue import celery_app

    config = load(config_path)
    app = celery_app.configure(config)
    app.conf.worker_consumer = "celery.worker.consumer:Consumer"  # Celery's own, not the poison guard
    model = app.conf.task_queues[0]
    app.conf.task_queues = [*app.conf.task_queues,
                            Queue(BARE_QUEUE, model.exchange, routing_key=BARE_QUEUE, durable=True)]
    dsn, local = libpq(config.store_url), threading.local()

    @app.task(name="bench.noop", ignore_result=True)
    def noop(published: float) -> None:
        """Nothing, except noting that, and when, it ran."""
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(dsn, autocommit=True)
        local.conn.execute("INSERT INTO bare_done VALUES (%s, %s)", (published, time.time()))

    return app


def run_bare_worker(config_path: Path) -> None:
    """Be a bare Celery worker, started and logging as `erasure worker` does."""
    from celery.signals import setup_logging

    from worker import logs

    logs.configure(level="INFO")
    setup_logging.connect(lambda **_: None, weak=False)  # keep the handler just set, as the worker does
    bare_app(config_path).worker_main([
        "worker", f"--concurrency={THREADS}", f"--queues={BARE_QUEUE}", "--loglevel=INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--pool=threads",
        f"--hostname=bare-{os.getpid()}@%h",
    ])


def send_all(count: int, publishers: int, send: Callable[[int], bool]) -> dict[str, Any]:
    """Call send for 0..count-1 from publisher threads; when it started, how long it took, its CPU,
    how many sends failed."""
    cpu, started = time.process_time(), time.time()
    with ThreadPoolExecutor(publishers) as pool:
        failed = sum(not ok for ok in pool.map(send, range(count)))
    return {"started": started, "publish_seconds": time.time() - started, "publisher_cpu": time.process_time() - cpu,
            "sent": count - failed}


def wait_finished(count: Callable[[], int], expected: int, stall: float) -> None:
    """Poll until count() reaches expected, or has not moved for stall seconds."""
    seen, moved = -1, time.monotonic()
    while (now := count()) < expected:
        if now != seen:
            seen, moved = now, time.monotonic()
        elif time.monotonic() - moved > stall:
            return
        time.sleep(0.5)


def drive_erasure(config_path: str, requests: int, publishers: int, stall: float) -> dict[str, Any]:
    """Submit the requests through intake and wait for them to settle (in a process of its own,
    whose Celery app points at this run's broker). The store keeps times to the second, so each
    request's submit time is taken here; its completion time comes from the workers' logs."""
    from sqlalchemy import func, select

    from connectors.errors import ErasureError
    from worker import logs
    from worker.config import load
    from worker.engine import intake
    from worker.queue.dispatch import celery_runtime
    from worker.store.models import Request, RequestStatus

    logs.configure(level="WARNING")
    rt = celery_runtime(load(Path(config_path)))
    rt.engine  # noqa: B018 - migrated before the clock starts
    submitted: dict[str, float] = {}

    def submit(i: int) -> bool:
        at = time.time()
        try:
            submitted[intake.submit(rt, {"user_id": str(1_000_000 + i)}).request_id] = at
        except ErasureError:
            return False
        return True

    got = send_all(requests, publishers, submit)
    settled = select(func.count()).where(Request.status.in_([RequestStatus.COMPLETED, RequestStatus.FAILED]))

    def count() -> int:
        with rt.transaction() as session:
            return session.scalar(settled) or 0

    wait_finished(count, got["sent"], stall)
    with rt.transaction() as session:
        rows = session.execute(select(Request.id, Request.status)).all()
    rt.close()
    completed = {r.id: submitted[r.id] for r in rows if r.status == RequestStatus.COMPLETED and r.id in submitted}
    return {**got, "completed": completed, "failed": sum(r.status == RequestStatus.FAILED for r in rows)}


def drive_bare(config_path: str, tasks: int, publishers: int, stall: float) -> dict[str, Any]:
    """Publish the no-op tasks and wait until they have all run (in a process of its own)."""
    import psycopg

    from worker.config import load

    app = bare_app(Path(config_path))

    def send(_: int) -> bool:
        app.send_task("bench.noop", args=[time.time()], queue=BARE_QUEUE)
        return True

    got = send_all(tasks, publishers, send)
    with psycopg.connect(libpq(load(Path(config_path)).store_url), autocommit=True) as conn:
        wait_finished(lambda: int(conn.execute("SELECT count(*) FROM bare_done").fetchone()[0]),  # type: ignore[index]
                      tasks, stall)
        finished = conn.execute("SELECT published, done FROM bare_done").fetchall()
    return {**got, "finished": [tuple(row) for row in finished], "failed": 0}


def completion_times(logs: list[Path]) -> dict[str, float]:
    """When each request completed, by the workers' `request.completed` events (logged as the
    transaction that completes it is about to commit)."""
    found = {}
    for log in logs:
        for line in log.read_text().splitlines():
            if '"request.completed"' in line:
                event = json.loads(line)
                found[event["request_id"]] = datetime.fromisoformat(event["timestamp"]).timestamp()
    return found


def tasks_run(logs: list[Path]) -> dict[str, int]:
    """How many tasks of each name the workers ran, by Celery's own `succeeded` log lines."""
    found: dict[str, int] = {}
    for log in logs:
        for name in SUCCEEDED.findall(log.read_text()):
            found[name] = found.get(name, 0) + 1
    return found


def measure(name: str, workers: Workers, drive: Callable[..., dict[str, Any]], config: Path, units: int,
            args: argparse.Namespace, store_url: str | None) -> Run:
    """Start the workers, run one driver in a fresh process, stop the workers; the figures."""
    try:
        workers.wait_ready()
        before_tx = committed(store_url) if store_url else None
        cpu, (busy, total) = workers.cpu(), cores_busy()
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            got = pool.submit(drive, str(config), units, args.publishers, args.stall).result()
        busy2, total2 = cores_busy()
        cpu = workers.cpu() - cpu
    finally:
        workers.stop()
    notes = []
    if "completed" in got:
        ran = tasks_run(workers.logs)
        notes.append(f"{name}: ran {sum(ran.values()):,} Celery tasks ("
                     + ", ".join(f"{task} {n:,}" for task, n in sorted(ran.items()))
                     + f") where {TASKS_PER_REQUEST} a request alone would be {units * TASKS_PER_REQUEST:,}")
        times = completion_times(workers.logs)
        finished = [(sent, times[request_id]) for request_id, sent in got["completed"].items() if request_id in times]
        if len(finished) < len(got["completed"]):
            notes.append(f"{name}: {len(got['completed']) - len(finished)} completed without a logged time, left out")
    else:
        finished = got["finished"]
    last = max((done for _, done in finished), default=got["started"])
    bare = drive is drive_bare
    run = Run(name, None if bare else got["sent"], units * (1 if bare else TASKS_PER_REQUEST),
              len(got.get("completed", finished)), got["failed"], last - got["started"],
              [done - sent for sent, done in finished],
              worker_cpu=cpu, busy=(busy2 - busy) / (total2 - total) if total2 > total else 0.0, notes=notes)
    if store_url and before_tx is not None:
        run.transactions = committed(store_url) - before_tx
    run.notes.append(f"{name}: published in {got['publish_seconds']:.1f} s of the {run.seconds:.1f} s window,"
                     f" publisher CPU {got['publisher_cpu']:.1f} s"
                     + (f", {units - got['sent']} refused" if units > got["sent"] else ""))
    return run


def rabbitmq_runs(args: argparse.Namespace, folder: Path) -> tuple[Run, Run]:
    """Erasure and bare Celery on a vhost and a database of their own."""
    import psycopg

    name = f"erasure-bench-{os.getpid()}"
    with vhost(args.amqp_url, name) as broker, database(args.pg_url, name.replace("-", "_")) as store:
        config = folder / "rabbitmq.toml"
        config.write_text(CONFIG.format(store=store, broker=broker))
        with psycopg.connect(libpq(store), autocommit=True) as conn:
            conn.execute("CREATE UNLOGGED TABLE bare_done (published double precision, done double precision)")
        print(f"erasure on RabbitMQ + PostgreSQL: {args.requests:,} requests ...", flush=True)
        erasure = measure("erasure, RabbitMQ + PostgreSQL", Workers([erasure_worker(config)] * 2, folder, "erasure"),
                          drive_erasure, config, args.requests, args, store)
        tasks = args.requests * TASKS_PER_REQUEST
        print(f"bare Celery, same broker: {tasks:,} no-op tasks ...", flush=True)
        bare = measure("bare Celery, no-op tasks", Workers([bare_worker(config)] * 2, folder, "bare"),
                       drive_bare, config, tasks, args, store)
    return erasure, bare


def embedded_run(args: argparse.Namespace, folder: Path) -> Run:
    """The embedded default: SQLite store and broker, one worker."""
    config = folder / "embedded.toml"
    config.write_text(CONFIG.format(store=f"sqlite:///{folder}/state.db", broker=f"sqla+sqlite:///{folder}/queue.db"))
    print(f"erasure embedded (SQLite store and broker): {args.embedded_requests:,} requests ...", flush=True)
    workers = Workers([erasure_worker(config)], folder, "embedded")
    return measure("erasure, embedded SQLite", workers, drive_erasure, config, args.embedded_requests, args, None)


@dataclass
class Burst:
    """What the burst measured."""

    requests: int
    submit_seconds: float
    start_seconds: float  # from the workers' launch to their being ready
    seconds: float  # from the workers' launch to the last completion
    completed: int
    failed: int
    intake_tx: int
    worker_tx: int
    worker_rollbacks: int
    worker_cpu: float
    busy: float
    tasks: dict[str, int]
    load: tuple[float, float]  # the 1-minute load average when the workers were launched, and at the end


def migrate_store(config_path: str) -> None:
    """Bring the store's schema up to date (in a process of its own), so intake's count holds intake alone."""
    from worker.config import load
    from worker.queue.dispatch import celery_runtime

    rt = celery_runtime(load(Path(config_path)))
    rt.engine  # noqa: B018 - migrated on first use
    rt.close()


def submit_burst(config_path: str, requests: int, publishers: int) -> dict[str, Any]:
    """Submit the requests through intake while no worker runs (in a process of its own)."""
    from connectors.errors import ErasureError
    from worker import logs
    from worker.config import load
    from worker.engine import intake
    from worker.queue.dispatch import celery_runtime

    logs.configure(level="WARNING")
    rt = celery_runtime(load(Path(config_path)))

    def submit(i: int) -> bool:
        try:
            intake.submit(rt, {"user_id": str(2_000_000 + i)})
        except ErasureError:
            return False
        return True

    got = send_all(requests, publishers, submit)
    rt.close()
    return got


def burst_run(args: argparse.Namespace, folder: Path) -> Burst:
    """--burst requests submitted at once with no worker running, then drained by two workers."""
    import psycopg

    name = f"erasure-bench-burst-{os.getpid()}"
    with vhost(args.amqp_url, name) as broker, database(args.pg_url, name.replace("-", "_")) as store:
        config = folder / "burst.toml"
        config.write_text(CONFIG.format(store=store, broker=broker))
        print(f"burst: {args.burst:,} requests submitted at once, no worker running ...", flush=True)
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            pool.submit(migrate_store, str(config)).result()
            before = committed(store)
            got = pool.submit(submit_burst, str(config), args.burst, args.publishers).result()
        submitted = transactions(store)
        print(f"burst: submitted in {got['publish_seconds']:.1f} s; two workers draining ...", flush=True)
        load_then, (busy, total), launched = os.getloadavg()[0], cores_busy(), time.time()
        workers = Workers([erasure_worker(config)] * 2, folder, "burst")
        polls = 0
        try:
            workers.wait_ready()
            ready = time.time()
            with psycopg.connect(libpq(store), autocommit=True) as conn:
                def settled() -> int:
                    nonlocal polls
                    polls += 1
                    row = conn.execute("SELECT count(*) FROM requests WHERE status IN ('completed', 'failed')")
                    return int(row.fetchone()[0])  # type: ignore[index]

                wait_finished(settled, got["sent"], args.stall)
                grouped = conn.execute("SELECT status, count(*) FROM requests GROUP BY status").fetchall()
                counts: dict[str, int] = {str(status): int(n) for status, n in grouped}
            polls += 1
            busy2, total2 = cores_busy()
            cpu = workers.cpu()
        finally:
            workers.stop()
        after = transactions(store)
    times = completion_times(workers.logs)
    last = max(times.values(), default=launched)
    return Burst(got["sent"], got["publish_seconds"], ready - launched, last - launched,
                 int(counts.get("completed", 0)), int(counts.get("failed", 0)), submitted[0] - before,
                 after[0] - submitted[0] - polls, after[1] - submitted[1], cpu,
                 (busy2 - busy) / (total2 - total) if total2 > total else 0.0,
                 tasks_run(workers.logs), (load_then, os.getloadavg()[0]))


def print_burst(burst: Burst) -> None:
    """The burst's figures."""
    n = burst.requests or 1
    lost = burst.requests - burst.completed - burst.failed
    print(f"\nburst of {burst.requests:,} requests against {len(SYSTEMS)} stub systems, RabbitMQ + PostgreSQL,"
          f" 2 workers x {THREADS} threads:")
    rows = [
        ("submitted at once (intake, no worker running)", f"{burst.submit_seconds:.1f} s",
         f"{burst.requests / burst.submit_seconds:,.1f} requests/s" if burst.submit_seconds else ""),
        ("all completed, from the workers' launch", f"{burst.seconds:.1f} s",
         f"{burst.completed / burst.seconds:,.1f} requests/s" if burst.seconds else ""),
        ("  of which the workers' start", f"{burst.start_seconds:.1f} s", ""),
        ("all completed, from the workers being ready", f"{burst.seconds - burst.start_seconds:.1f} s",
         f"{burst.completed / (burst.seconds - burst.start_seconds):,.1f} requests/s"
         if burst.seconds > burst.start_seconds else ""),
        ("store transactions per request: intake", f"{burst.intake_tx / n:.2f}", f"{burst.intake_tx:,} commits"),
        ("store transactions per request: workers", f"{burst.worker_tx / n:.2f}", f"{burst.worker_tx:,} commits"),
        ("store transactions per request: total", f"{(burst.intake_tx + burst.worker_tx) / n:.2f}", ""),
        ("  and the workers' reads ended by ROLLBACK, per request", f"{burst.worker_rollbacks / n:.2f}",
         f"{burst.worker_rollbacks:,} rollbacks"),
        ("worker CPU per request", f"{burst.worker_cpu * 1000 / n:.2f} ms", f"cores busy {burst.busy:.0%}"),
        ("completed / failed / lost", f"{burst.completed:,} / {burst.failed:,} / {lost:,}", ""),
        ("Celery tasks run", f"{sum(burst.tasks.values()):,}",
         ", ".join(f"{task} {k:,}" for task, k in sorted(burst.tasks.items()))),
        ("load average (1 min) at the workers' launch, at the end", f"{burst.load[0]:.2f}, {burst.load[1]:.2f}", ""),
    ]
    width = max(len(label) for label, _, _ in rows)
    value = max(len(v) for _, v, _ in rows)
    for label, v, note in rows:
        print(f"  {label.ljust(width)}  {v.rjust(value)}  {note}".rstrip())


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, 0 if none."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def print_table(erasure: Run, bare: Run, embedded: Run | None) -> None:
    """The figures of each run, aligned, then the ratios against the targets."""
    runs = [erasure, bare, *([embedded] if embedded else [])]
    lines = [("", "requests", "tasks", "seconds", "requests/s", "tasks/s", "p50 s", "p99 s", "lost", "failed",
              "worker CPU ms/task", "store tx/request", "cores busy")]
    for run in runs:
        lines.append((
            run.name, "-" if run.requests is None else f"{run.requests:,}", f"{run.tasks:,}", f"{run.seconds:.1f}",
            f"{run.rate:,.1f}" if run.requests is not None else f"({run.rate / TASKS_PER_REQUEST:,.1f})",
            f"{run.task_rate:,.0f}", f"{percentile(run.latencies, 50):.2f}", f"{percentile(run.latencies, 99):.2f}",
            f"{run.lost:,}", f"{run.failed:,}", f"{run.worker_cpu * 1000 / run.tasks:.2f}" if run.tasks else "-",
            f"{run.transactions / run.requests:.1f}" if run.transactions and run.requests else "-",
            f"{run.busy:.0%}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  ".join([line[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))]))
    print("(erasure's tasks: 4 a request, as it would run alone; the Celery tasks it ran are in the notes below."
          " Bare Celery's requests/s in brackets: its tasks/s / 4, the request-equivalent; its p50/p99 are per task."
          " Store tx as PostgreSQL counts commits)")
    print()
    if bare.task_rate:
        ratio = erasure.task_rate / bare.task_rate
        verdict = "PASS" if ratio >= TARGET else "MISS"
        print(f"erasure tasks/s / bare Celery tasks/s (= requests/s / bare request-equivalent): {ratio:.2f}"
              f"  target >= {TARGET:.2f}  {verdict}")
        print(f"  read strictly, requests/s / bare tasks/s: {erasure.rate / bare.task_rate:.3f}")
    for run in runs:
        print(f"{run.name}: lost {run.lost}, failed {run.failed}  target 0 lost  {'PASS' if not run.lost else 'MISS'}")
    if embedded and erasure.rate:
        print(f"embedded / RabbitMQ + PostgreSQL requests/s: {embedded.rate / erasure.rate:.2f}")
    for run in runs:
        for note in run.notes:
            print(note)


def main() -> None:
    """Set up, run, print, tear down."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests on RabbitMQ + PostgreSQL, against "
                        "bare Celery (default 5000; 0 skips both runs, and the embedded one)")
    parser.add_argument("--embedded-requests", type=int, default=500, help="requests on the embedded default "
                        "(default 500; 0 skips it)")
    parser.add_argument("--burst", type=int, default=10_000, help="requests of the burst, submitted at once "
                        "before the workers start (default 10000; 0 skips it)")
    parser.add_argument("--publishers", type=int, default=4, help="threads submitting or publishing (default 4)")
    parser.add_argument("--stall", type=float, default=120.0, help="seconds without progress before the "
                        "unfinished count as lost (default 120)")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/",
                        help="RabbitMQ as guest; the run adds a vhost of its own")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL as a user who may create databases")
    parser.add_argument("--bare-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        run_bare_worker(Path(args.bare_worker))
        return
    for override in ("ERASURE_CONFIG", "ERASURE_STORE_URL", "ERASURE_BROKER_URL"):
        os.environ.pop(override, None)  # the configs written here say where everything is
    os.environ.update({"ERASURE_SECRET_KEY": BENCH_KEY, "ERASURE_LOG_FORMAT": "json"})

    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="erasure-pipeline-bench-"))
    try:
        erasure, bare = rabbitmq_runs(args, folder) if args.requests else (None, None)
        embedded = embedded_run(args, folder) if args.embedded_requests and args.requests else None
        burst = burst_run(args, folder) if args.burst else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{os.cpu_count()} cores; load average before {' '.join(f'{x:.2f}' for x in load_before)},"
          f" after {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    if erasure and bare:
        print_table(erasure, bare, embedded)
    if burst:
        print_burst(burst)


if __name__ == "__main__":
    main()
