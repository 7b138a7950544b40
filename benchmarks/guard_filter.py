"""What keeping guarded people out of a training table costs: `Guard.filter` over a Parquet file's
column against one pyarrow pass that filters the same column by a set of values in the clear.

    python benchmarks/guard_filter.py --rows 10000000 --distinct 1000000 --guarded 1000 --repeat 3

The file (made in a temporary folder, not timed) has user_id int64, email string and n int64;
--distinct mixed-case addresses spread over the rows at random, zstd, row groups of 1M rows. The
guard list holds --guarded of those addresses (lower-cased, as intake folds an email). Each way
runs --repeat times in a process of its own, so its peak memory is its own, after a warm-up run
(the file in the page cache):

- pyarrow: pq.read_table, then table.filter(~pc.is_in(email, value_set=the guarded addresses as
  stored)): the floor, with the values in the clear and no fold;
- guard: pq.read_table, then Guard.filter(table, column="email", type="email"): the column
  dictionary-encoded, each distinct value folded and hashed (HMAC-SHA256) once;
- guard, dictionary read: the same, the column read dictionary-encoded (`read_dictionary`), as
  Parquet stores it, so there is no encoding pass.

Prints each way's median seconds (whole, and the filter alone), its ratio to pyarrow's, the rows
kept (the same for all), and its peak memory: the process's resident set and Arrow's own pool.
Figures only; nothing is asserted."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from worker.guard import FORMAT, Guard, derive_key, key_id

KEY = "benchmark-subject-key-0123456789abcdef"
SEED = 2026
WAYS = ("pyarrow", "guard", "guard-dictionary")


def make(folder: Path, rows: int, distinct: int, guarded: int) -> None:
    """The Parquet file, the guard list, and the guarded addresses as stored (for the pyarrow way)."""
    rng = np.random.default_rng(SEED)
    upper = rng.random((distinct, 4)) < 0.3
    emails = []
    for i in range(distinct):
        name = f"user.{i:07d}"
        cased = "".join(c.upper() if upper[i][j % 4] else c for j, c in enumerate(name))
        emails.append(f"{cased}@Example.com")
    column = pa.array(emails).take(pa.array(rng.integers(0, distinct, rows)))
    table = pa.table({"user_id": pa.array(np.arange(rows, dtype=np.int64)), "email": column,
                      "n": pa.array(rng.integers(0, 1 << 40, rows))})
    pq.write_table(table, folder / "data.parquet", row_group_size=1 << 20, compression="zstd")
    chosen = [emails[i] for i in rng.choice(distinct, guarded, replace=False)]
    guard_key = derive_key(KEY)
    probe = Guard(guard_key, {"email": ()}, {"email": ("lower",)})
    digests = sorted(probe.digest(e, type="email").hex() for e in chosen)
    (folder / "guard.json").write_text(json.dumps({"format": FORMAT, "key_id": key_id(guard_key), "created_at": "-",
                                                   "types": {"email": digests}, "folds": {"email": ["lower"]}}))
    (folder / "stored.json").write_text(json.dumps(chosen))


def run(way: str, folder: Path, repeat: int) -> dict[str, object]:
    """One way, in this process: a warm-up, then `repeat` timed runs."""
    path = str(folder / "data.parquet")
    guard = Guard.load(folder / "guard.json", key=KEY)
    stored = pa.array(json.loads((folder / "stored.json").read_text()))
    wholes, filters, kept = [], [], 0
    for attempt in range(repeat + 1):
        start = time.perf_counter()
        table = pq.read_table(path, read_dictionary=["email"] if way == "guard-dictionary" else None)
        read = time.perf_counter()
        if way == "pyarrow":
            result = table.filter(pc.invert(pc.is_in(table.column("email"), value_set=stored)))
        else:
            result = guard.filter(table, column="email", type="email")
        done = time.perf_counter()
        kept = result.num_rows
        if attempt:  # the first run warms the page cache
            wholes.append(done - start)
            filters.append(done - read)
        del table, result
    return {"seconds": statistics.median(wholes), "filter_seconds": statistics.median(filters), "kept": kept,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "arrow_peak_mb": pa.default_memory_pool().max_memory() / 2**20}


def main() -> None:
    """Make the data, run each way in its own process, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--distinct", type=int, default=1_000_000)
    parser.add_argument("--guarded", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--run", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run(args.run, Path(args.data), args.repeat)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        make(folder, args.rows, args.distinct, args.guarded)
        size = (folder / "data.parquet").stat().st_size / 2**20
        print(f"{args.rows:,} rows, {args.distinct:,} distinct emails, {args.guarded:,} guarded; "
              f"{size:.0f} MB of Parquet, made in {time.perf_counter() - began:.1f} s\n")
        figures = {}
        for way in WAYS:
            done = subprocess.run([sys.executable, __file__, "--run", way, "--data", tmp, "--repeat", str(args.repeat)],
                                  capture_output=True, text=True, check=True)
            figures[way] = json.loads(done.stdout)
    floor = figures["pyarrow"]
    print(f"{'way':<18}{'seconds':>9}{'filter s':>10}{'x pyarrow':>11}{'filter x':>10}{'rows kept':>13}"
          f"{'peak RSS MB':>13}{'Arrow peak MB':>15}")
    for way, got in figures.items():
        print(f"{way:<18}{got['seconds']:>9.2f}{got['filter_seconds']:>10.2f}"
              f"{got['seconds'] / floor['seconds']:>10.2f}x{got['filter_seconds'] / floor['filter_seconds']:>9.2f}x"
              f"{got['kept']:>13,}{got['rss_mb']:>13.0f}{got['arrow_peak_mb']:>15.0f}")


if __name__ == "__main__":
    main()
