"""A snapshot file is read and rewritten a row group (Parquet) or a few records (JSON lines, CSV) at a
time: what a pass holds in memory stays bounded by one row group, never by the file."""

from __future__ import annotations

import gzip
import multiprocessing
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.snapshot import scan
from connectors.snapshot.match import Key
from tests.helpers import snapshot_connector, user

GROUPS = 24
GROUP_ROWS = 32_768
LINES = 40_000
RECORD_PEAK = 1_500_000  # bytes of Python objects a text pass may hold; the files below are 4 MB and more


def connector(location: Path, fmt: str) -> Any:
    """A connector over a location of files in one format, keyed by user_id."""
    return snapshot_connector({"name": "events", "kind": "snapshot", "location": str(location), "format": fmt,
                               "where": {"user_id": "user_id"}})


def many_groups(path: Path, groups: int = GROUPS, rows: int = GROUP_ROWS) -> pa.Table:
    """A Parquet file of `groups` row groups, user 7 in each of them; one row group's rows returned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = groups * rows
    table = pa.table({"user_id": pa.array([i % 1000 for i in range(n)], pa.int64()),
                      "payload": pa.array([f"{i:064d}" for i in range(n)])})
    pq.write_table(table, path, row_group_size=rows, compression="zstd")
    return table.slice(0, rows)


def arrow_peaks(location: str) -> tuple[int, int, int, int]:
    """In a fresh process: Arrow's pool peak after counting user 7's rows and after erasing them, and the rows."""
    snapshot = connector(Path(location), "parquet")
    counted = snapshot.verify(user("7"))
    counting = pa.default_memory_pool().max_memory()
    erased = snapshot.erase(user("7")).items_erased
    return counting, pa.default_memory_pool().max_memory(), counted, erased


def test_parquet_passes_hold_a_few_row_groups_not_the_file(tmp_path: Path) -> None:
    """Counting and rewriting a 24-row-group file, the subject in every group, peaks in Arrow's pool
    under 6 row groups' worth (the where column's alone when counting), never near the file's 24."""
    group = many_groups(tmp_path / "2026-10-01" / "part-0.parquet")
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh pool: its peak is this pass's
        counting, erasing, counted, erased = pool.apply(arrow_peaks, (str(tmp_path),))
    rows = GROUPS * GROUP_ROWS
    assert counted == erased == rows // 1000 + (7 < rows % 1000)
    assert counting < 6 * group["user_id"].nbytes
    assert erasing < 6 * group.nbytes
    after = pq.ParquetFile(tmp_path / "2026-10-01" / "part-0.parquet").metadata
    assert after.num_row_groups == GROUPS


def text_file(path: Path, fmt: str) -> int:
    """A JSON lines or CSV file of LINES records of about 100 bytes, user 7's every 1000th; its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        data = "".join(f'{{"user_id": {i % 1000}, "payload": "{i:096d}"}}\n' for i in range(LINES))
    else:
        data = "user_id,payload\n" + "".join(f"{i % 1000},{i:096d}\n" for i in range(LINES))
    raw = data.encode()
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return len(raw)


def traced_peak(run: Any) -> tuple[Any, int]:
    """What run() returns, and the most memory Python's allocator held for it at once."""
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["part-0.jsonl", "part-0.csv", "part-0.jsonl.gz", "part-0.csv.gz"])
def test_text_passes_hold_a_few_records_not_the_file(tmp_path: Path, name: str) -> None:
    """Erasing from and counting in a 4 MB JSON lines or CSV file (gzipped or not) holds under 1.5 MB of
    Python objects at once: records are read, matched and written a few at a time."""
    fmt = "jsonl" if ".jsonl" in name else "csv"
    size = text_file(tmp_path / "2026-10-01" / name, fmt)
    assert size > 2.5 * RECORD_PEAK
    snapshot = connector(tmp_path, fmt)
    outcome, erasing = traced_peak(lambda: snapshot.erase(user("7")))
    left, counting = traced_peak(lambda: snapshot.verify(user("7")))
    assert (outcome.items_erased, left) == (LINES // 1000, 0)
    assert erasing < RECORD_PEAK
    assert counting < RECORD_PEAK


def test_where_values_come_a_row_group_at_a_time(tmp_path: Path) -> None:
    """Reading a Parquet file's where values (the guard check's scan) yields one batch per row group."""
    path = tmp_path / "2026-10-01" / "part-0.parquet"
    many_groups(path, groups=5, rows=1000)
    batches = list(scan.read_where("parquet", "2026-10-01/part-0.parquet", str(path), [Key("user_id", "user_id")]))
    assert [batch.rows for batch in batches] == [1000] * 5


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_where_values_come_a_batch_of_records_at_a_time(tmp_path: Path, fmt: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a text file's where values yields batches of at most BATCH_ROWS records, all of them."""
    monkeypatch.setattr(scan, "BATCH_ROWS", 3_000)
    path = tmp_path / "2026-10-01" / f"part-0.{fmt}"
    text_file(path, fmt)
    batches = list(scan.read_where(fmt, f"2026-10-01/part-0.{fmt}", str(path), [Key("user_id", "user_id")]))
    assert [batch.rows for batch in batches] == [3_000] * (LINES // 3_000) + [LINES % 3_000]
