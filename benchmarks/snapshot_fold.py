"""What folding the stored side costs: counting a Parquet file's rows by a folded email column
(NFC, then lower; NFC alone; trim and lower) against the same column compared as stored.

    python benchmarks/snapshot_fold.py --rows 1000000 --non-ascii 0.01 --repeat 5

The file (generated in a temporary folder, not timed) has user_id int64, email string and a
40-byte payload, zstd, row groups of 131,072 rows; emails are mixed case, shuffled (so min/max
statistics skip no group, folded or not), a --non-ascii share of them with an accented letter,
some decomposed (these go through Python's fold, the rest through Arrow's ASCII kernels). Each
way counts 10 subjects' emails with ParquetFormat.count, --repeat times after a warm-up; its
seconds are the median. A copy sorted by the stored text, with 10 neighbouring subjects, shows
what statistics save an exact column (a folded one cannot use them). Figures only; nothing is
asserted."""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.base import Subject
from connectors.normalize import Fold, fold_text
from connectors.snapshot.formats import ParquetFormat
from connectors.snapshot.match import Key, Sought

ROW_GROUP = 128 * 1024
SEED = 2026
WAYS: dict[str, Fold | None] = {"exact": None, "nfc": (), "lower": ("lower",), "trim+lower": ("trim", "lower")}


def emails(rows: int, non_ascii: float, rng: random.Random) -> list[str]:
    """Mixed-case addresses, a share of them with an é (composed or decomposed)."""
    found = []
    for i in range(rows):
        name = f"user.{i:07d}"
        if rng.random() < non_ascii:
            name = f"rené.{i:07d}" if i % 2 else f"rene\u0301.{i:07d}"
        spelled = "".join(c.upper() if rng.random() < 0.3 else c for c in name)
        found.append(f"{spelled}@Example.com")
    return found


def write(path: Path, rows: int, non_ascii: float, ordered: bool) -> list[str]:
    """The file; returns its emails in row order."""
    rng = random.Random(SEED)
    mails = emails(rows, non_ascii, rng)
    if ordered:
        mails.sort()
    else:
        rng.shuffle(mails)
    table = pa.table({
        "user_id": pa.array(range(rows), pa.int64()),
        "email": pa.array(mails, pa.string()),
        "payload": pa.array([b"x" * 40] * rows, pa.binary()),
    })
    pq.write_table(table, path, row_group_size=ROW_GROUP, compression="zstd")
    return mails


def seconds(path: Path, key: Key, subjects: list[Subject], repeat: int) -> tuple[float, int]:
    """The median time of counting, and the rows counted."""
    sought = Sought([key], subjects)
    fmt = ParquetFormat()
    found = sum(fmt.count(str(path), sought))  # warm-up: the file in the page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fmt.count(str(path), sought)
        times.append(time.perf_counter() - start)
    return statistics.median(times), found


def main() -> None:
    """Print the seconds and ratios of each way."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--non-ascii", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fold-bench-") as folder:
        for ordered in (False, True):
            path = Path(folder, f"{'sorted' if ordered else 'shuffled'}.parquet")
            mails = write(path, args.rows, args.non_ascii, ordered)
            start = random.Random(SEED + 1).randrange(len(mails) - 10)
            picked = mails[start:start + 10] if ordered else random.Random(SEED + 1).sample(mails, 10)
            print(f"\n{args.rows:,} rows, {'sorted' if ordered else 'shuffled'}, "
                  f"{args.non_ascii:.0%} non-ASCII, {path.stat().st_size / 1e6:.1f} MB, median of {args.repeat}")
            base = None
            for way, fold in WAYS.items():
                # a request's value arrives folded; "exact" is given the stored spelling itself
                values = picked if fold is None else [fold_text(m, fold) for m in picked]
                subjects = [Subject({"email": (v,)}) for v in values]
                took, found = seconds(path, Key("email", "email", fold), subjects, args.repeat)
                base = base or took
                print(f"  {way:<11} {took * 1000:8.1f} ms  {took / base:5.2f}x exact  ({found} rows)")


if __name__ == "__main__":
    main()
