"""How the snapshot connector erases K subjects in one batched pass, against a bare pyarrow pass and DuckDB.

    pip install -e '.[bench]'
    python benchmarks/snapshot_erase.py --rows 10000000 --files 8 --ks 1,100,1000 --data /var/tmp/snapshot-bench

(a quick run: --rows 400000 --ks 1,10 --repeat 1). `--scale-out` runs the scale-out run instead (below).
The snapshot is generated once and kept in --data
(default: erasure-snapshot-bench in the temp folder), reused while its parameters match:
Parquet files of user_id int64, event string, ts timestamp, value float64 and a 40-byte
payload, zstd, row groups of 131,072 rows. Each user_id has four rows; each file
covers its own user_id range (file statistics can skip files) but its rows are shuffled
(row-group statistics cannot skip within a file), as in a partitioned export.

For each K, the K subjects are (a) spread over all files and (b) concentrated in one file.
Three ways leave the same result, the affected files replaced durably (fsync, then rename):
the connector (`erase_many` once, on a location holding the snapshot as 2026-11-01/), the
floor (one pyarrow read-filter-write pass over exactly the affected files, row group by row
group), and DuckDB (one COPY ... WHERE user_id NOT IN (...) per affected file). Every case
starts from a fresh copy flushed to disk (not timed) and runs in a fresh spawned process
pinned to the same cores, after a warm-up erasure of a small file; each case runs --repeat
times, the ways taking turns so that other work on the machine weighs on each alike, and its
seconds are the median. Its peak memory is the RSS high-water mark (VmHWM, reset just before
the erasure), "above start" what it grew beyond the RSS it had then, and "Arrow" the most
Arrow's memory pool held at once (not DuckDB's: it has its own); the largest of the runs.
The load average is printed before and after. Figures only; nothing is asserted.

The scale-out run (`--scale-out`, e.g. `--scale-out --rows 6400000 --files 32 --ks 64 --repeat 3`): the
same snapshot (--files, 32 for the issue's figure) erased for K requests (spread over all files) by
real `erasure worker` processes (`--concurrency 1`, the snapshot queue only, unpinned) on PostgreSQL
and RabbitMQ: one worker with the pass unsplit (today's pass in one process), one worker with the pass
split a part per file (`snapshot_part_mb = 0`), and two workers on the split pass. Each run has its own
store database, vhost and fresh copy; the requests are submitted and started in this process once the
workers are ready, and the clock runs from the start to the last request completed. Files per second
each, the cores the workers used meanwhile (their CPU time over the run's), and two workers' throughput
over one's (the aim: at least 1.7x on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SNAPSHOT_ID = "2026-11-01"
ROW_GROUP = 128 * 1024
ROWS_PER_USER = 4
COMPRESSION = "zstd"
PAYLOAD_BYTES = 40
SEED = 2026
FIRST_ID = 1_000_000_000
EVENTS = pa.array(["view", "click", "add_to_cart", "purchase", "search", "share"])
WAYS = ("connector", "pyarrow floor", "duckdb")
LAYOUTS = ("spread", "concentrated")
MB = 1024 * 1024
Case = dict[str, Any]


def file_rows(rows: int, files: int) -> list[int]:
    """How many rows each file holds."""
    return [rows // files + (i < rows % files) for i in range(files)]


def id_ranges(rows: int, files: int) -> list[range]:
    """The user ids each file holds, one distinct range per file."""
    span = -(-max(file_rows(rows, files)) // ROWS_PER_USER)
    return [range(FIRST_ID + i * span, FIRST_ID + i * span + -(-n // ROWS_PER_USER))
            for i, n in enumerate(file_rows(rows, files))]


def uniform(n: int, seed: int, scale: float) -> pa.Array:
    """n reproducible random floats in [0, scale)."""
    return pc.multiply(pc.random(n, initializer=seed), scale)


def whole(n: int, seed: int, scale: float) -> pa.Array:
    """n reproducible random int64 in [0, scale)."""
    return pc.cast(pc.floor(uniform(n, seed, scale)), pa.int64())


def clicks(n: int, ids: range, seed: int) -> pa.Table:
    """One file's rows: each id ROWS_PER_USER times (the last maybe fewer), shuffled."""
    user_id = pc.add(pc.divide(pa.array(range(n), pa.int64()), ROWS_PER_USER), ids.start)
    payload = random.Random(seed).randbytes(n * PAYLOAD_BYTES // 2).hex().encode()
    offsets = pa.array(range(0, n * PAYLOAD_BYTES + 1, PAYLOAD_BYTES), pa.int32()).buffers()[1]
    since = 1_790_000_000_000_000  # microseconds, autumn 2026
    table = pa.table({
        "user_id": user_id,
        "event": EVENTS.take(whole(n, seed + 1, len(EVENTS))),
        "ts": pc.cast(pc.add(whole(n, seed + 2, 30 * 86_400e6), since), pa.timestamp("us")),
        "value": uniform(n, seed + 3, 100.0),
        "payload": pa.Array.from_buffers(pa.string(), n, [None, offsets, pa.py_buffer(payload)]),
    })
    return table.take(pc.sort_indices(uniform(n, seed + 4, 1.0)))


def generate(data: Path, rows: int, files: int) -> list[Path]:
    """The snapshot's files in data, written unless a run with the same parameters left them."""
    params = {"rows": rows, "files": files, "row_group": ROW_GROUP, "rows_per_user": ROWS_PER_USER,
              "compression": COMPRESSION, "seed": SEED, "version": 1}
    manifest = data / "params.json"
    paths = [data / f"part-{i:05}.parquet" for i in range(files)]
    if manifest.exists() and json.loads(manifest.read_text()) == params and all(p.exists() for p in paths):
        return paths
    if data.exists() and any(data.iterdir()) and not manifest.exists():
        raise SystemExit(f"{data} is not empty and holds no params.json: not a benchmark data folder")
    data.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    for old in data.glob("part-*.parquet"):
        old.unlink()
    print(f"generating {rows:,} rows in {files} files in {data} ...", flush=True)
    start = time.perf_counter()
    for i, (n, ids) in enumerate(zip(file_rows(rows, files), id_ranges(rows, files), strict=True)):
        pq.write_table(clicks(n, ids, SEED + 10 * i), paths[i], row_group_size=ROW_GROUP, compression=COMPRESSION)
    manifest.write_text(json.dumps(params))
    print(f"generated in {time.perf_counter() - start:.1f} s", flush=True)
    return paths


def subject_sets(ranges: list[range], k: int) -> dict[str, list[int]]:
    """K existing user ids spread over all files, and K in the middle file alone."""
    rng = random.Random(SEED + k)
    spread: list[int] = []
    for i, ids in enumerate(ranges):
        spread += rng.sample(ids, k // len(ranges) + (i < k % len(ranges)))
    return {"spread": spread, "concentrated": rng.sample(ranges[len(ranges) // 2], k)}


def matches(location: Path, rels: list[str], ids: list[int]) -> dict[str, int]:
    """Rows of each file whose user_id is one of ids (only files holding some)."""
    values = pa.array(ids, pa.int64())
    found = {}
    for rel in rels:
        column = pq.read_table(location / rel, columns=["user_id"])["user_id"]
        if n := pc.sum(pc.is_in(column, value_set=values)).as_py():
            found[rel] = n
    return found


def swap_in(temp: Path, target: Path) -> None:
    """Make a written file durable and put it in place of the target, as the connector does."""
    with open(temp, "rb+") as written:
        os.fsync(written.fileno())
    os.replace(temp, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def erase_with_connector(location: Path, rels: list[str], ids: list[int], threads: int) -> None:
    """One erase_many call over the location, one subject per id."""
    from connectors.base import ConfigReader, Subject
    from connectors.snapshot.connector import SnapshotConfig, SnapshotConnector

    raw = {"name": "clickstream", "kind": "snapshot", "location": str(location), "format": "parquet",
           "where": {"user_id": "user_id"}}
    config = SnapshotConfig.read(ConfigReader("bench", "system 'clickstream'", raw, frozenset({"user_id"})))
    subjects = [Subject({"user_id": (str(i),)}) for i in ids]
    with SnapshotConnector(config) as connector:
        timed(lambda: connector.erase_many(subjects))


def erase_with_pyarrow(location: Path, rels: list[str], ids: list[int], threads: int) -> None:
    """The floor: each affected file read row group by row group, filtered and written once."""
    values = pa.array(ids, pa.int64())

    def run() -> None:
        for rel in rels:
            target = location / rel
            temp = target.with_name(f".{target.name}.tmp")
            with pq.ParquetFile(target) as parquet:
                with pq.ParquetWriter(temp, parquet.schema_arrow, compression=COMPRESSION) as writer:
                    for index in range(parquet.metadata.num_row_groups):
                        group = parquet.read_row_group(index)
                        kept = group.filter(pc.invert(pc.is_in(group["user_id"], value_set=values)))
                        writer.write_table(kept, row_group_size=ROW_GROUP)
            swap_in(temp, target)

    timed(run)


def erase_with_duckdb(location: Path, rels: list[str], ids: list[int], threads: int) -> None:
    """One DuckDB COPY per affected file, on the same number of threads."""
    import duckdb

    listed = ", ".join(str(int(i)) for i in ids)  # integers made here: nothing to inject
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")

    def run() -> None:
        for rel in rels:
            target = location / rel
            temp = target.with_name(f".{target.name}.tmp")
            source, sink = (str(p).replace("'", "''") for p in (target, temp))
            con.execute(f"COPY (SELECT * FROM read_parquet('{source}') WHERE user_id NOT IN ({listed})) "  # noqa: S608
                        f"TO '{sink}' (FORMAT parquet, COMPRESSION {COMPRESSION}, ROW_GROUP_SIZE {ROW_GROUP})")
            swap_in(temp, target)

    timed(run)
    con.close()


ERASERS = {"connector": erase_with_connector, "pyarrow floor": erase_with_pyarrow, "duckdb": erase_with_duckdb}
CHILD: Case = {}  # what the case running in this (spawned) process measured


def timed(run: Callable[[], object]) -> None:
    """Run the erasure, noting its seconds, the RSS it began with and the RSS high-water mark it reached."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    except OSError:
        pass  # Linux before 4.0: the mark counts from the process's start, imports included
    CHILD["start_kb"] = memory_kb("VmRSS")
    start = time.perf_counter()
    run()
    CHILD["seconds"] = time.perf_counter() - start
    CHILD["peak_kb"] = memory_kb("VmHWM")
    CHILD["arrow_peak"] = pa.default_memory_pool().max_memory()  # the warm-up's is far less


def memory_kb(field: str) -> int:
    """A memory figure of this process from /proc, in KiB.

    Not getrusage's ru_maxrss: Linux keeps it across fork and exec, so a spawned child
    starts with its parent's high-water mark."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1])


def run_case(way: str, location: str, rels: list[str], ids: list[int], cores: list[int]) -> Case:
    """In a fresh process: one way's erasure, its seconds and its memory."""
    os.sched_setaffinity(0, cores)
    pa.set_cpu_count(len(cores))
    warm = Path(location).parent / "warm-up"  # a worker has its code paged in; so should this process
    (warm / SNAPSHOT_ID).mkdir(parents=True)
    pq.write_table(clicks(1000, range(FIRST_ID, FIRST_ID + 250), SEED), warm / rels[0], compression=COMPRESSION)
    ERASERS[way](warm, rels[:1], [FIRST_ID], len(cores))
    shutil.rmtree(warm)
    ERASERS[way](Path(location), rels, ids, len(cores))
    return dict(CHILD)


def fresh_copy(paths: list[Path], location: Path) -> list[str]:
    """The snapshot copied (bytes, not links) under location/SNAPSHOT_ID/ and flushed to disk, so that no
    case pays for writing back the copy when it syncs its own files; the files relative to location."""
    shutil.rmtree(location, ignore_errors=True)
    (location / SNAPSHOT_ID).mkdir(parents=True)
    for path in paths:
        shutil.copyfile(path, location / SNAPSHOT_ID / path.name)
    os.sync()
    return [f"{SNAPSHOT_ID}/{path.name}" for path in paths]


def stamps(location: Path, rels: list[str]) -> dict[str, tuple[int, int]]:
    """Each file's inode and mtime: a rewritten file changes both."""
    return {rel: (stat.st_ino, stat.st_mtime_ns) for rel in rels for stat in [(location / rel).stat()]}


def measure(way: str, paths: list[Path], location: Path, ids: list[int], affected: dict[str, int],
            cores: list[int]) -> Case:
    """One case on a fresh copy, in a fresh process; what it took and what it left."""
    rels = fresh_copy(paths, location)
    before = stamps(location, rels)
    rows_before = sum(pq.read_metadata(location / rel).num_rows for rel in rels)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        case = pool.apply(run_case, (way, str(location), sorted(affected), ids, cores))
    after = stamps(location, rels)
    case["removed"] = rows_before - sum(pq.read_metadata(location / rel).num_rows for rel in rels)
    case["rewritten"] = sum(before[rel] != after[rel] for rel in rels)
    case["left"] = sum(matches(location, rels, ids).values())
    shutil.rmtree(location)
    return case


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SCALE_OUT = (("1 worker, one pass", 1, 1_000_000), ("1 worker, parts", 1, 0), ("2 workers, parts", 2, 0))


def scale_out(paths: list[Path], ids: list[int], scratch: Path, repeat: int) -> None:
    """Each way of the scale-out run `repeat` times, taking turns; the median seconds, files per second and ratio."""
    import sqlalchemy as sa  # the scale-out run alone needs the store's and the worker's packages
    from sqlalchemy.pool import NullPool

    os.environ.setdefault("ERASURE_SECRET_KEY", "bench-" + os.urandom(24).hex())
    runs: dict[str, list[float]] = {name: [] for name, _, _ in SCALE_OUT}
    used: dict[str, list[float]] = {name: [] for name, _, _ in SCALE_OUT}
    for attempt in range(repeat):
        for name, workers, part_mb in SCALE_OUT:
            tag = f"bench_scale_{os.getpid()}_{attempt}_{workers}_{part_mb}"
            location = scratch / "location"
            rels = fresh_copy(paths, location)
            admin = sa.create_engine(PG_ADMIN, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {tag}")
            subprocess_run(["rabbitmqctl", "-q", "add_vhost", tag])
            subprocess_run(["rabbitmqctl", "-q", "set_permissions", "-p", tag, "guest", ".*", ".*", ".*"])
            vhost_up(f"amqp://guest:guest@127.0.0.1:5672/{tag}")
            try:
                with multiprocessing.get_context("spawn").Pool(1) as pool:  # each run its own Celery app
                    seconds, cores = pool.apply(scale_out_once, (scratch, tag, location, ids, workers, part_mb))
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")
                subprocess_run(["rabbitmqctl", "-q", "delete_vhost", tag])
            left = sum(matches(location, rels, ids).values())
            runs[name].append(seconds)
            used[name].append(cores)
            print(f"  {name:<20} {seconds:7.2f} s  {len(paths) / seconds:6.2f} files/s  {cores:4.2f} cores used  "
                  f"left {left}; {load()}", flush=True)
            shutil.rmtree(location)
    median = {name: statistics.median(times) for name, times in runs.items()}
    lines = [("way", "seconds", "files/s", "cores used", "runs")]
    for name, _, _ in SCALE_OUT:
        lines.append((name, f"{median[name]:.2f}", f"{len(paths) / median[name]:.2f}",
                      f"{statistics.median(used[name]):.2f}", " ".join(f"{t:.2f}" for t in runs[name])))
    print()
    print_aligned(lines, left=1)
    two, one = median["2 workers, parts"], median["1 worker, parts"]
    verdict = "PASS" if one / two >= 1.7 else "MISS"
    print(f"\n2 workers / 1 worker (parts): {one / two:.2f}x throughput (aim >= 1.7x: {verdict}); "
          f"one pass / parts, 1 worker: {median['1 worker, one pass'] / one:.2f}x; {load()}")


def scale_out_once(scratch: Path, tag: str, location: Path, ids: list[int], workers: int,
                   part_mb: int) -> tuple[float, float]:
    """One run: workers started and ready, the requests submitted and started here; seconds until all
    completed, and the cores the workers used meanwhile (their CPU seconds over those seconds)."""
    import subprocess
    import sys

    import sqlalchemy as sa

    from worker import logs
    from worker.config import load
    from worker.engine import fanout, intake
    from worker.queue.dispatch import celery_runtime

    logs.configure(level="WARNING")  # each request's events, here and in the workers' logs, are not the figure

    store = f"postgresql+psycopg://postgres@127.0.0.1:5432/{tag}"
    config = scratch / f"{tag}.toml"
    config.write_text(f"""store_url = "{store}"
broker_url = "amqp://guest:guest@127.0.0.1:5672/{tag}"

[worker]
snapshot_part_mb = {part_mb}
batch_wait_seconds = 0
group_size = 1000

[identifiers]
user_id = {{ pattern = '^[0-9]{{1,18}}$' }}

[[systems]]
name = "clickstream"
kind = "snapshot"
location = "{location}"
format = "parquet"
where = {{ user_id = "user_id" }}
""")
    rt = celery_runtime(load(config))
    rt.check()  # the store migrated before any worker opens it
    logs = [scratch / f"{tag}-{n}.log" for n in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-m", "worker", "worker", "--config", str(config), "--no-beat",
                               "--concurrency", "1", "--queues", "erasure.snapshot"],
                              stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                              env={**os.environ, "ERASURE_LOG_FORMAT": "json"})
             for log in logs]
    try:
        deadline = time.monotonic() + 120
        while not all(" ready." in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"a worker did not start: see {logs}")
            time.sleep(0.2)
        request_ids = [intake.submit(rt, {"user_id": str(i)}).request_id for i in ids]
        engine = sa.create_engine(store, pool_size=1)  # one connection polls: a new one each poll loads the cores
        cpu_before = sum(cpu_seconds(proc.pid) for proc in procs)
        start = time.perf_counter()
        fanout.start(rt, request_ids[0])  # starts them all (group_size), one message to the snapshot queue
        while True:
            with engine.connect() as conn:
                done = conn.exec_driver_sql("SELECT count(*) FROM requests WHERE status IN ('completed', 'failed')")
                if done.scalar() == len(ids):
                    break
            if time.monotonic() > deadline + 3600 or any(p.poll() is not None for p in procs):
                raise SystemExit(f"the erasure did not finish: see {logs}")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        cores = (sum(cpu_seconds(proc.pid) for proc in procs) - cpu_before) / seconds
        with engine.connect() as conn:
            failed = conn.exec_driver_sql("SELECT count(*) FROM requests WHERE status = 'failed'").scalar()
        if failed:
            raise SystemExit(f"{failed} request(s) failed: see {logs}")
        return seconds, cores
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
            proc.wait(60)


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vhost_up(url: str) -> None:
    """Wait until a new vhost takes connections (on a busy machine it may not at once)."""
    from kombu import Connection

    for _ in range(100):
        try:
            with Connection(url) as connection:
                connection.connect()
                return
        except Exception:  # noqa: BLE001 - not yet there
            time.sleep(0.3)
    raise SystemExit(f"{url}: the vhost never came up")


def subprocess_run(argv: list[str]) -> None:
    """Run a command, failing on error."""
    import subprocess

    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def main() -> None:
    """Generate or reuse the snapshot, run every case, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the snapshot (default 10000000)")
    parser.add_argument("--files", type=int, default=8, help="Parquet files in the snapshot (default 8)")
    parser.add_argument("--ks", default="1,100,1000", help="subjects per erasure, comma-separated (default 1,100,1000)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "erasure-snapshot-bench",
                        help="where the generated snapshot is kept and reused")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="cores every way is pinned to (default: all this process may use)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case, the median kept (default 3)")
    parser.add_argument("--scale-out", action="store_true",
                        help="the scale-out run instead: 1 and 2 worker processes (needs PostgreSQL and RabbitMQ)")
    args = parser.parse_args()
    ks = sorted({int(k) for k in args.ks.split(",")})
    ranges = id_ranges(args.rows, args.files)
    if max(ks) > min(len(r) for r in ranges):
        raise SystemExit(f"K={max(ks)} is more than the {min(len(r) for r in ranges):,} users of one file")
    cores = sorted(os.sched_getaffinity(0))[: args.threads]

    paths = generate(args.data, args.rows, args.files)
    with pq.ParquetFile(paths[0]) as first:
        group = first.read_row_group(0)
    per_row = group.nbytes / group.num_rows
    sizes = {"group": group.nbytes, "file": int(per_row * args.rows / args.files), "snapshot": int(per_row * args.rows)}
    print(f"{args.rows:,} rows in {args.files} files, {sum(p.stat().st_size for p in paths) / MB:,.0f} MB on disk; "
          f"in memory: one row group {sizes['group'] / MB:,.1f} MB, one file {sizes['file'] / MB:,.0f} MB, "
          f"the snapshot {sizes['snapshot'] / MB:,.0f} MB; {len(cores)} core(s); {load()}\n", flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="cases-", dir=args.data))
    if args.scale_out:
        try:
            k = max(ks[0], args.files)  # a subject in every file: every file rewritten
            print(f"scale-out: K={k:,} requests spread over {args.files} files", flush=True)
            scale_out(paths, subject_sets(ranges, k)["spread"], scratch, args.repeat)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    results: dict[tuple[str, int, str], Case] = {}
    try:
        for k in ks:
            for layout, ids in subject_sets(ranges, k).items():
                found = matches(args.data, [p.name for p in paths], ids)
                affected = {f"{SNAPSHOT_ID}/{name}": n for name, n in found.items()}
                runs: dict[str, list[Case]] = {way: [] for way in WAYS}
                for _ in range(args.repeat):
                    for way in WAYS:
                        runs[way].append(measure(way, paths, scratch / "location", ids, affected, cores))
                for way in WAYS:
                    case = summary(runs[way]) | {"affected": len(affected), "expected": sum(affected.values())}
                    results[layout, k, way] = case
                    each = " ".join(f"{run['seconds']:.2f}" for run in runs[way])
                    print(f"  {layout:<12} K={k:<5} {way:<14} {case['seconds']:7.2f} s  (runs: {each})", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{load()}; seconds are the median of {args.repeat} run(s)\n")
    print_table(results)
    print()
    print_ratios(results, ks, sizes)


def summary(runs: list[Case]) -> Case:
    """One case's runs as one: the median seconds, the most memory, what the first run left."""
    if len({(run["removed"], run["rewritten"], run["left"]) for run in runs}) > 1:
        print("  the runs of this case left different results: see the table for the first", flush=True)
    return runs[0] | {
        "seconds": statistics.median(run["seconds"] for run in runs),
        "peak_kb": max(run["peak_kb"] for run in runs),
        "grew_kb": max(run["peak_kb"] - run["start_kb"] for run in runs),
        "arrow_peak": max(run["arrow_peak"] for run in runs),
    }


def load() -> str:
    """The machine's load average, as uptime shows it."""
    return "load average " + ", ".join(f"{n:.2f}" for n in os.getloadavg())


def print_table(results: dict[tuple[str, int, str], Case]) -> None:
    """The ways side by side per case, then each run's figures, aligned."""
    ways = [("layout", "K", *(f"{way} s" for way in WAYS), "connector / floor", "connector / duckdb",
             "files rewritten")]
    for layout, k in dict.fromkeys((layout, k) for layout, k, _ in results):
        seconds = [results[layout, k, way]["seconds"] for way in WAYS]
        ways.append((layout, f"{k:,}", *(f"{s:.2f}" for s in seconds), f"{seconds[0] / seconds[1]:.2f}x",
                     f"{seconds[0] / seconds[2]:.2f}x", str(results[layout, k, "connector"]["rewritten"])))
    print_aligned(ways, left=2)
    print()
    lines = [("layout", "K", "way", "seconds", "rows removed", "expected", "files rewritten", "affected", "left",
              "peak RSS MB", "above start MB", "Arrow MB")]
    for (layout, k, way), case in results.items():
        lines.append((layout, f"{k:,}", way, f"{case['seconds']:.2f}", f"{case['removed']:,}", f"{case['expected']:,}",
                      f"{case['rewritten']}", f"{case['affected']}", f"{case['left']:,}",
                      f"{case['peak_kb'] / 1024:,.0f}", f"{case['grew_kb'] / 1024:,.0f}",
                      "-" if way == "duckdb" else f"{case['arrow_peak'] / MB:,.0f}"))
    print_aligned(lines, left=3)


def print_ratios(results: dict[tuple[str, int, str], Case], ks: list[int], sizes: dict[str, int]) -> None:
    """The ratios the connector aims at, each beside its target with PASS or MISS, and its memory."""
    low, high = ks[0], ks[-1]
    seconds = {key: case["seconds"] for key, case in results.items()}
    lines = [("target", "value", "aim", "", "")]

    def target(name: str, value: float, limit: float, strict: bool = False, note: str = "") -> None:
        met = value < limit if strict else value <= limit
        lines.append((name, f"{value:.2f}x", f"{'<' if strict else '<='} {limit:g}x", "PASS" if met else "MISS", note))

    for layout in LAYOUTS:
        target(f"{layout} K={high:,}: connector / pyarrow floor",
               seconds[layout, high, "connector"] / seconds[layout, high, "pyarrow floor"], 1.3)
    for layout in LAYOUTS if high != low else ():
        files = results[layout, high, "connector"]["affected"] / results[layout, low, "connector"]["affected"]
        growth = seconds[layout, high, "connector"] / seconds[layout, low, "connector"]
        floor = seconds[layout, high, "pyarrow floor"] / seconds[layout, low, "pyarrow floor"]
        note = f"K={low:,} rewrites {files:g}x fewer files; the floor's own ratio {floor:.2f}x" if files != 1 else ""
        target(f"{layout}: connector K={high:,} / K={low:,}", growth, 2.0, note=note)
        if files != 1:
            target(f"{layout}: the same, per affected file", growth / files, 2.0)
    for layout in LAYOUTS:
        target(f"{layout} K={high:,}: connector / duckdb",
               seconds[layout, high, "connector"] / seconds[layout, high, "duckdb"], 1.0, strict=True)
    for k in ks:
        rewritten = results["concentrated", k, "connector"]["rewritten"]
        lines.append((f"concentrated K={k:,}: rewrote {rewritten} file(s)", str(rewritten), "1",
                      "PASS" if rewritten == 1 else "MISS", ""))
    arrow = max(case["arrow_peak"] for (_, _, way), case in results.items() if way == "connector")
    target("connector's Arrow peak / one file in memory", arrow / sizes["file"], 1.0, strict=True,
           note=f"{arrow / sizes['group']:.1f} row groups, {arrow / sizes['snapshot']:.1%} of the snapshot")
    print_aligned(lines, left=1, note=True)
    print()
    memory = [("peak memory, largest case", "RSS above start MB", "row groups", "files", "of the snapshot",
               "Arrow MB", "row groups")]
    for way in WAYS:
        cases = [case for (_, _, w), case in results.items() if w == way]
        grew = max(case["grew_kb"] for case in cases) * 1024
        arrow = max(case["arrow_peak"] for case in cases)
        memory.append((way, f"{grew / MB:,.0f}", f"{grew / sizes['group']:.1f}", f"{grew / sizes['file']:.2f}",
                       f"{grew / sizes['snapshot']:.1%}", *(("-", "-") if way == "duckdb" else
                                                             (f"{arrow / MB:,.0f}", f"{arrow / sizes['group']:.1f}"))))
    print_aligned(memory, left=1)
    print(f"(in memory: one row group {sizes['group'] / MB:,.1f} MB, one file {sizes['file'] / MB:,.0f} MB, "
          f"the snapshot {sizes['snapshot'] / MB:,.0f} MB)")


def print_aligned(lines: Sequence[tuple[str, ...]], left: int, note: bool = False) -> None:
    """Rows of cells, the first `left` columns left-aligned, the others right-aligned but a last note."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    last = len(widths) - 1 if note else len(widths)
    for line in lines:
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [cell.ljust(width) if i < left or i == last else cell.rjust(width) for i, (cell, width) in pairs]
        print("  ".join(cells).rstrip())


if __name__ == "__main__":
    main()
