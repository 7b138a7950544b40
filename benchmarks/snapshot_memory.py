"""How much memory a snapshot worker takes to erase subjects from one 2 GB file, against one row group.

    python benchmarks/snapshot_memory.py                     # 2 GB each of Parquet, JSON lines and CSV
    python benchmarks/snapshot_memory.py --size-gb 0.1 --formats parquet --keep     # a quick run

One generated file per format, --size-gb on disk each, of user_id int64, event string, ts
timestamp, value float64 and a 40-character payload (Parquet: zstd, row groups of 131,072 rows;
JSON lines and CSV: the same rows as text). Each user_id has four rows, far apart: row r belongs
to user (r * 1,000,000,007 mod rows) // 4, so every row group's statistics span every id and
none can be skipped. The files are kept in --data (default /var/tmp/erasure-memory-bench) while a
run goes, reused by the next run while their parameters match, and deleted at the end unless --keep.

Each case runs in a fresh spawned process, on a location holding the file as 2026-11-01/ (a hard
link: a rewrite writes a new file beside it and renames it in, so the generated file stays as it
was), after a warm-up on a small file of the same format: the count pass (`verify_many`, which
`locate_many` shares) and the erasure (`erase_many`, which rewrites the file) of K subjects. Peak
RSS is the high-water mark (VmHWM, reset just before the pass), "above start" what it grew beyond
the RSS it had then, "Arrow" the most Arrow's default memory pool held at once (the warm-up's is
far less). Ratios: above start per one row group as Arrow holds it in memory (Parquet) and per the
file on disk. The load average is printed with the figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

SNAPSHOT_ID = "2026-11-01"
ROW_GROUP = 128 * 1024
ROWS_PER_USER = 4
STRIDE = 1_000_000_007  # a prime: consecutive rows belong to users far apart
FIRST_ID = 1_000_000_000
PAYLOAD_BYTES = 40
SEED = 2026
EVENTS = pa.array(["view", "click", "add_to_cart", "purchase", "search", "share"])
ENDINGS = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}
PASSES = ("count", "erase")
MB = 1024 * 1024
Case = dict[str, Any]


def chunk(index: int, rows: int) -> pa.Table:
    """Rows index * ROW_GROUP onwards of a file of `rows` rows (one row group's worth)."""
    start = index * ROW_GROUP
    n = min(ROW_GROUP, rows - start)
    spread = pc.multiply(pa.arange(start, start + n), STRIDE)  # below 2**63 for any rows under 9e9
    spread = pc.subtract(spread, pc.multiply(pc.divide(spread, rows), rows))
    seed = SEED + 10 * index
    payload = random.Random(seed).randbytes(n * PAYLOAD_BYTES // 2).hex().encode()
    offsets = pa.array(range(0, n * PAYLOAD_BYTES + 1, PAYLOAD_BYTES), pa.int32()).buffers()[1]
    since = 1_790_000_000_000_000  # microseconds, autumn 2026
    return pa.table({
        "user_id": pc.add(pc.divide(spread, ROWS_PER_USER), FIRST_ID),
        "event": EVENTS.take(whole(n, seed + 1, len(EVENTS))),
        "ts": pc.cast(pc.add(whole(n, seed + 2, 30 * 86_400e6), since), pa.timestamp("us")),
        "value": pc.multiply(pc.random(n, initializer=seed + 3), 100.0),
        "payload": pa.Array.from_buffers(pa.string(), n, [None, offsets, pa.py_buffer(payload)]),
    })


def whole(n: int, seed: int, scale: float) -> pa.Array:
    """n reproducible random int64 in [0, scale)."""
    return pc.cast(pc.floor(pc.multiply(pc.random(n, initializer=seed), scale)), pa.int64())


def write(fmt: str, sink: BinaryIO | str, tables: Iterator[pa.Table]) -> None:
    """The tables' rows as one file of the format."""
    if fmt == "parquet":
        first = next(tables)
        with pq.ParquetWriter(sink, first.schema, compression="zstd") as writer:
            for table in itertools.chain([first], tables):
                writer.write_table(table, row_group_size=ROW_GROUP)
        return
    with open(sink, "wb") if isinstance(sink, str) else nullcontext(sink) as out:
        header = fmt == "csv"
        for table in tables:
            if fmt == "csv":
                pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=header))
                header = False
            else:
                out.write(("\n".join(json_lines(table).to_pylist()) + "\n").encode())


def json_lines(table: pa.Table) -> pa.Array:
    """Each row as a JSON object's text."""
    ts = pc.strftime(table["ts"], "%Y-%m-%dT%H:%M:%S")
    parts = ['{"user_id": ', pc.cast(table["user_id"], pa.string()), ', "event": "', table["event"], '", "ts": "', ts,
             '", "value": ', pc.cast(table["value"], pa.string()), ', "payload": "', table["payload"], '"}']
    return pc.binary_join_element_wise(*parts, "").combine_chunks()


def rows_for(fmt: str, target: int) -> int:
    """How many rows (whole row groups) make a file of the format about `target` bytes on disk."""
    sample = tempfile.SpooledTemporaryFile()
    write(fmt, sample, iter([chunk(0, ROW_GROUP * 1000)]))  # type: ignore[arg-type]
    per_group = sample.tell()
    return max(1, round(target / per_group)) * ROW_GROUP


def generate(data: Path, fmt: str, target: int) -> tuple[Path, int]:
    """The format's file in data and its rows, written unless a run with the same parameters left it."""
    path = data / f"big{ENDINGS[fmt]}"
    manifest = data / f"big-{fmt}.json"
    params = {"format": fmt, "target": target, "row_group": ROW_GROUP, "seed": SEED, "version": 1}
    if manifest.exists() and path.exists():
        kept = json.loads(manifest.read_text())
        if kept["params"] == params and kept["stat"] == stat(path):
            return path, kept["rows"]
    manifest.unlink(missing_ok=True)
    rows = rows_for(fmt, target)
    print(f"generating {rows:,} rows of {fmt} in {path} ...", flush=True)
    start = time.perf_counter()
    write(fmt, str(path), (chunk(i, rows) for i in range(-(-rows // ROW_GROUP))))
    manifest.write_text(json.dumps({"params": params, "stat": stat(path), "rows": rows}))
    print(f"  {path.stat().st_size / MB:,.0f} MB in {time.perf_counter() - start:.0f} s; {load()}", flush=True)
    return path, rows


def stat(path: Path) -> list[int]:
    """A file's inode, size and mtime: a rewrite in place would change them."""
    found = path.stat()
    return [found.st_ino, found.st_size, found.st_mtime_ns]


def check_space(data: Path, formats: Sequence[str], target: int) -> None:
    """Exit unless the disk holds every file to generate and one rewrite beside it, with a tenth to spare."""
    need = int((len(formats) + 1) * target * 1.1)
    have = shutil.disk_usage(data).free + sum(p.stat().st_size for p in data.glob("big.*"))
    print(f"disk: {shutil.disk_usage(data).free / 2**30:,.1f} GB free at {data}, "
          f"{need / 2**30:,.1f} GB needed at most", flush=True)
    if have < need:
        raise SystemExit(f"not enough disk at {data}: {have / 2**30:.1f} GB free, {need / 2**30:.1f} GB needed")


def connector(fmt: str, location: Path) -> Any:
    """A snapshot connector over the location, keyed by user_id, as the tests build one."""
    from connectors.base import ConfigReader
    from connectors.snapshot.connector import SnapshotConfig, SnapshotConnector

    raw = {"name": "clickstream", "kind": "snapshot", "location": str(location), "format": fmt,
           "where": {"user_id": "user_id"}}
    return SnapshotConnector(SnapshotConfig.read(ConfigReader("bench", "system 'clickstream'", raw,
                                                               frozenset({"user_id"}))))


def one_pass(fmt: str, location: Path, way: str, ids: Sequence[int]) -> int:
    """Run one pass over the location: rows found (count) or removed (erase)."""
    from connectors.base import Subject

    subjects = [Subject({"user_id": (str(i),)}) for i in ids]
    with connector(fmt, location) as snapshot:
        if way == "count":
            return sum(snapshot.verify_many(subjects))
        done = snapshot.erase_many(subjects)
        errors = [outcome for outcome in done if isinstance(outcome, Exception)]
        if errors:
            raise errors[0]
        return sum(outcome.items_erased for outcome in done)


def run_case(fmt: str, location: str, way: str, ids: list[int]) -> Case:
    """In a fresh process: a warm-up on a small file, then one pass with its memory measured."""
    warm = Path(tempfile.mkdtemp(prefix="warm-up-"))
    (warm / SNAPSHOT_ID).mkdir()
    write(fmt, str(warm / SNAPSHOT_ID / f"part{ENDINGS[fmt]}"), iter([chunk(0, 1000)]))  # Arrow: 80 kB
    one_pass(fmt, warm, way, [FIRST_ID])
    shutil.rmtree(warm)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    except OSError:
        pass  # Linux before 4.0: the mark counts from the process's start, imports included
    start_kb = memory_kb("VmRSS")
    began = time.perf_counter()
    rows = one_pass(fmt, Path(location), way, ids)
    return {"seconds": time.perf_counter() - began, "rows": rows, "start_kb": start_kb,
            "peak_kb": memory_kb("VmHWM"), "arrow": pa.default_memory_pool().max_memory()}


def memory_kb(field: str) -> int:
    """A memory figure of this process from /proc, in KiB (not ru_maxrss: a spawned child inherits it)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1])


def measure(fmt: str, path: Path, rows: int, location: Path, way: str, ids: list[int]) -> Case:
    """One case in a fresh process on a fresh link to the file; what it took, and whether it rewrote the file."""
    target = location / SNAPSHOT_ID / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    os.link(path, target)
    before = stat(path)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        case = pool.apply(run_case, (fmt, str(location), way, ids))
    if stat(path) != before:
        raise SystemExit(f"{path} changed under a link: the rewrite was not beside the file")
    case["rewritten"] = target.stat().st_ino != before[0]
    if way == "erase" and fmt == "parquet":
        if (removed := rows - pq.read_metadata(target).num_rows) != case["rows"]:
            print(f"  the rewritten file lacks {removed:,} rows, the connector said {case['rows']:,}", flush=True)
    target.unlink()
    return case


def load() -> str:
    """The machine's load average, as uptime shows it."""
    return "load average " + ", ".join(f"{n:.2f}" for n in os.getloadavg())


def main() -> None:
    """Generate or reuse the files, run every case, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="each file's size on disk (default 2)")
    parser.add_argument("--formats", default="parquet,jsonl,csv", help="comma-separated (default parquet,jsonl,csv)")
    parser.add_argument("--ks", default="1,1000", help="subjects per pass, comma-separated (default 1,1000)")
    parser.add_argument("--data", type=Path, default=Path("/var/tmp/erasure-memory-bench"),
                        help="where the generated files are kept")
    parser.add_argument("--keep", action="store_true", help="keep the generated files for the next run")
    args = parser.parse_args()
    formats = [fmt for fmt in args.formats.split(",") if fmt]
    ks = sorted({int(k) for k in args.ks.split(",")})
    target = int(args.size_gb * 2**30)
    args.data.mkdir(parents=True, exist_ok=True)
    check_space(args.data, formats, target)
    print(f"{load()}; {len(os.sched_getaffinity(0))} core(s)\n", flush=True)
    location = args.data / "location"
    results: list[Case] = []
    try:
        for fmt in formats:
            path, rows = generate(args.data, fmt, target)
            group = chunk(0, rows).nbytes  # one row group as Arrow holds it
            users = rows // ROWS_PER_USER
            for k in ks:
                ids = [FIRST_ID + u for u in random.Random(SEED + k).sample(range(users), k)]
                for way in PASSES:
                    case = measure(fmt, path, rows, location, way, ids)
                    case |= {"format": fmt, "pass": way, "k": k, "file": path.stat().st_size, "rows_in_file": rows,
                             "group": group, "expected": k * ROWS_PER_USER, "load": os.getloadavg()[0]}
                    results.append(case)
                    grew = (case["peak_kb"] - case["start_kb"]) / 1024
                    print(f"  {fmt:<8} {way:<6} K={k:<5} peak RSS {case['peak_kb'] / 1024:7,.0f} MB, above start "
                          f"{grew:6,.0f} MB, Arrow {case['arrow'] / MB:6,.0f} MB, rows {case['rows']:,} of "
                          f"{case['expected']:,}, {case['seconds']:.0f} s; {load()}", flush=True)
    finally:
        shutil.rmtree(location, ignore_errors=True)
        if not args.keep:
            for fmt in formats:
                (args.data / f"big{ENDINGS[fmt]}").unlink(missing_ok=True)
                (args.data / f"big-{fmt}.json").unlink(missing_ok=True)
    print(f"\n{load()}\n")
    print_table(results)


def print_table(results: list[Case]) -> None:
    """Every case's figures, aligned."""
    lines = [("format", "pass", "K", "file MB", "rows", "row group MB", "peak RSS MB", "above start MB", "Arrow MB",
              "above / group", "Arrow / group", "above / file", "rows hit", "expected", "rewritten", "seconds")]
    for case in results:
        grew = (case["peak_kb"] - case["start_kb"]) * 1024
        parquet = case["format"] == "parquet"
        lines.append((
            case["format"], case["pass"], f"{case['k']:,}", f"{case['file'] / MB:,.0f}", f"{case['rows_in_file']:,}",
            f"{case['group'] / MB:.1f}" if parquet else "-", f"{case['peak_kb'] / 1024:,.0f}", f"{grew / MB:,.0f}",
            f"{case['arrow'] / MB:,.1f}", f"{grew / case['group']:.2f}" if parquet else "-",
            f"{case['arrow'] / case['group']:.2f}" if parquet else "-", f"{grew / case['file']:.2%}",
            f"{case['rows']:,}", f"{case['expected']:,}", "yes" if case["rewritten"] else "no",
            f"{case['seconds']:.0f}"))
    print_aligned(lines, left=2)
    print(f"(a Parquet row group: {ROW_GROUP:,} rows; 'above / group' is the RSS growth in row groups as Arrow holds "
          f"them; 'above / file' the growth per the file's bytes on disk)")


def print_aligned(lines: Sequence[tuple[str, ...]], left: int) -> None:
    """Rows of cells, the first `left` columns left-aligned, the others right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [cell.ljust(width) if i < left else cell.rjust(width) for i, (cell, width) in pairs]
        print("  ".join(cells).rstrip())


if __name__ == "__main__":
    main()
