"""The snapshot connector against real Parquet files in a temporary folder."""

from __future__ import annotations

import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.base import SnapshotHit, Subject
from connectors.errors import ConfigError, PermanentError, TransientError
from connectors.snapshot import connector as snapshots
from connectors.snapshot.connector import SnapshotConfig, SnapshotConnector
from connectors.snapshot.formats import ParquetFormat
from tests.helpers import VersionedFolder, system_config, user


def config(location: Path | str, **overrides: Any) -> SnapshotConfig:
    """A clickstream config as erasure.toml would hold it."""
    return system_config(SnapshotConfig, {"name": "clickstream", "kind": "snapshot", "location": str(location),
                                          "format": "parquet", "where": {"user_id": "user_id"}, **overrides})


def connector(location: Path, **overrides: Any) -> SnapshotConnector:
    """A connector over the location."""
    return SnapshotConnector(config(location, **overrides))


def write(path: Path, user_ids: list[Any], id_type: pa.DataType | None = None, **options: Any) -> Path:
    """A Parquet file of clicks: one event per user id, named by position."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"user_id": pa.array(user_ids, id_type or pa.int64()),
                      "event": [f"click-{i}" for i in range(len(user_ids))]})
    pq.write_table(table, path, **options)
    return path


def column(path: Path, name: str = "user_id") -> list[Any]:
    """One column of a Parquet file, as Python values."""
    return pq.read_table(path).column(name).to_pylist()


def state(path: Path) -> tuple[bytes, int]:
    """A file's bytes and mtime, to prove it was never written."""
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture
def snaps(tmp_path: Path) -> Path:
    """The acceptance layout: two snapshots, user 2 only in 2026-10-01/part-0."""
    write(tmp_path / "2026-10-01" / "part-0.parquet", [1, 2, 3, 2, 1, 2])
    write(tmp_path / "2026-10-01" / "part-1.parquet", [4, 5, 4])
    write(tmp_path / "2026-11-01" / "part-0.parquet", [1, 3, 3])
    return tmp_path


def test_erase_rewrites_only_the_file_holding_the_subject(snaps: Path) -> None:
    """Erasing user 2 removes their 3 rows, keeps the rest in order, and leaves other files alone."""
    untouched = [snaps / "2026-10-01" / "part-1.parquet", snaps / "2026-11-01" / "part-0.parquet"]
    before = [state(p) for p in untouched]
    outcome = connector(snaps).erase(user("2"))
    part0 = snaps / "2026-10-01" / "part-0.parquet"
    assert column(part0) == [1, 3, 1]
    assert column(part0, "event") == ["click-0", "click-2", "click-4"]
    assert [state(p) for p in untouched] == before
    assert outcome.items_erased == 3
    assert outcome.snapshots == (SnapshotHit("clickstream:2026-10-01", 3, ("2026-10-01/part-0.parquet",)),)
    assert outcome.evidence == {"files": [
        {"snapshot": "clickstream:2026-10-01", "file": "2026-10-01/part-0.parquet", "rows_removed": 3}]}
    assert sorted(os.listdir(part0.parent)) == ["part-0.parquet", "part-1.parquet"]


def test_locate_finds_the_snapshots_without_changing_them(snaps: Path) -> None:
    """locate() names the snapshot, rows and files holding user 2, and writes nothing."""
    files = sorted(snaps.rglob("*.parquet"))
    before = [state(p) for p in files]
    hits = connector(snaps).locate(user("2"))
    assert hits == (SnapshotHit("clickstream:2026-10-01", 3, ("2026-10-01/part-0.parquet",)),)
    assert [state(p) for p in files] == before


def test_locate_groups_files_by_snapshot(snaps: Path) -> None:
    """A subject in several files and snapshots gets one hit per snapshot listing its files."""
    assert connector(snaps).locate(user("1", "4")) == (
        SnapshotHit("clickstream:2026-10-01", 4, ("2026-10-01/part-0.parquet", "2026-10-01/part-1.parquet")),
        SnapshotHit("clickstream:2026-11-01", 1, ("2026-11-01/part-0.parquet",)),
    )


def test_second_erase_finds_nothing_and_writes_nothing(snaps: Path) -> None:
    """Erasing again removes 0 rows and rewrites no file."""
    conn = connector(snaps)
    conn.erase(user("2"))
    before = [state(p) for p in sorted(snaps.rglob("*.parquet"))]
    outcome = conn.erase(user("2"))
    assert (outcome.items_erased, outcome.snapshots, outcome.evidence) == (0, (), {"files": []})
    assert [state(p) for p in sorted(snaps.rglob("*.parquet"))] == before


def test_verify_counts_rows_left(snaps: Path) -> None:
    """verify() counts the subject's rows before erasing and 0 after."""
    conn = connector(snaps)
    assert conn.verify(user("2")) == 3
    conn.erase(user("2"))
    assert conn.verify(user("2")) == 0
    assert conn.verify(user("1")) == 3


def test_several_values_are_all_removed(snaps: Path) -> None:
    """Every value of the subject's is erased, across snapshots."""
    outcome = connector(snaps).erase(user("1", "3"))
    assert outcome.items_erased == 6
    assert column(snaps / "2026-10-01" / "part-0.parquet") == [2, 2, 2]
    assert column(snaps / "2026-11-01" / "part-0.parquet") == []


def test_schema_metadata_and_compression_are_kept(tmp_path: Path) -> None:
    """A rewritten file keeps its schema, key-value metadata and compression codec."""
    table = pa.table({"user_id": pa.array([1, 2, 3], pa.int32()), "event": ["a", "b", "c"]})
    table = table.replace_schema_metadata({"source": "clickstream", "version": "3"})
    path = tmp_path / "2026-10-01" / "part-0.parquet"
    path.parent.mkdir()
    pq.write_table(table, path, compression="zstd")
    connector(tmp_path).erase(user("2"))
    rewritten = pq.ParquetFile(path)
    assert rewritten.schema_arrow.equals(table.schema, check_metadata=True)
    assert rewritten.metadata.row_group(0).column(0).compression == "ZSTD"
    assert rewritten.read().column("event").to_pylist() == ["a", "c"]


def test_row_groups_keep_their_size_and_rows_their_order(tmp_path: Path) -> None:
    """A file of several row groups is rewritten with groups of about the same size, in order."""
    ids = [i % 7 for i in range(3000)]
    path = write(tmp_path / "s" / "big.parquet", ids, row_group_size=1000)
    connector(tmp_path).erase(user("3"))
    rewritten = pq.ParquetFile(path)
    sizes = [rewritten.metadata.row_group(i).num_rows for i in range(rewritten.metadata.num_row_groups)]
    assert len(sizes) == 3 and all(850 <= s <= 1000 for s in sizes)
    assert column(path, "event") == [f"click-{i}" for i, uid in enumerate(ids) if uid != 3]


def test_integer_column_matches_whole_numbers_only(tmp_path: Path) -> None:
    """42 removes 42, never 420; values that are not plain integers match nothing."""
    path = write(tmp_path / "s" / "p.parquet", [42, 420, 4, 42])
    conn = connector(tmp_path)
    assert conn.erase(user("42abc", "4.2e1", " 42", "99999999999999999999")).items_erased == 0
    assert conn.erase(user("42")).items_erased == 2
    assert column(path) == [420, 4]


def test_string_column_matches_exact_text(tmp_path: Path) -> None:
    """"42" removes "42" from a string column, not "420" nor "042"."""
    path = write(tmp_path / "s" / "p.parquet", ["42", "420", "042", "42"], pa.string())
    assert connector(tmp_path).erase(user("42")).items_erased == 2
    assert column(path) == ["420", "042"]


@pytest.mark.parametrize("value", ["%", "*", "", ".*", "4_"])
@pytest.mark.parametrize("id_type", [pa.string(), pa.int64()])
def test_patterns_and_empty_values_match_nothing(tmp_path: Path, value: str, id_type: pa.DataType) -> None:
    """Values that look like patterns, or are empty, match no row of any type."""
    ids = ["42", "420", "a%b", "*x", " ", "4_"[:-1]] if id_type == pa.string() else [42, 420, 0, 4]
    path = write(tmp_path / "s" / "p.parquet", ids, id_type)
    before = state(path)
    assert connector(tmp_path).erase(user(value)).items_erased == 0
    assert state(path) == before


@pytest.mark.parametrize(("id_type", "ids", "kept"), [
    (pa.float64(), [42.0, 420.0, 4.2], [420.0, 4.2]),
    (pa.dictionary(pa.int32(), pa.string()), ["42", "420", "42"], ["420"]),
])
def test_other_column_types_match_by_cast(tmp_path: Path, id_type: pa.DataType, ids: list[Any],
                                          kept: list[Any]) -> None:
    """Float and dictionary columns match the values that cast to their type; others are skipped."""
    path = write(tmp_path / "s" / "p.parquet", ids, id_type)
    assert connector(tmp_path).erase(user("42", "x")).items_erased == len(ids) - len(kept)
    assert column(path) == kept
    assert pq.ParquetFile(path).schema_arrow.field("user_id").type == id_type


def test_where_columns_are_anded(tmp_path: Path) -> None:
    """With two where columns, a row goes only when both hold the subject's values."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"user_id": [1, 1, 2], "email": ["a@x", "b@x", "a@x"]}), path)
    conn = connector(tmp_path, where={"user_id": "user_id", "email": "email"})
    assert conn.erase(Subject({"user_id": ("1",)})).items_erased == 0
    assert conn.erase(Subject({"user_id": ("1",), "email": ("a@x",)})).items_erased == 1
    assert column(path, "email") == ["b@x", "a@x"]


def test_hidden_and_temp_files_are_ignored(snaps: Path) -> None:
    """Dotfiles, _-prefixed files and leftover temp files are neither read nor rewritten."""
    hidden = [write(snaps / "2026-10-01" / ".part-1.parquet.erasure-tmp", [2]),
              write(snaps / "2026-10-01" / ".hidden.parquet", [2]),
              write(snaps / "2026-10-01" / "_staging" / "x.parquet", [2]),
              write(snaps / ".trash" / "x.parquet", [2])]
    before = [state(p) for p in hidden]
    assert connector(snaps).erase(user("2")).items_erased == 3
    assert [state(p) for p in hidden] == before


def test_files_in_subfolders_count_and_loose_files_do_not(snaps: Path) -> None:
    """Parquet files anywhere under a snapshot folder are data; files beside the folders are not."""
    nested = write(snaps / "2026-10-01" / "country=DE" / "part-0.parquet", [2, 7])
    loose = write(snaps / "stray.parquet", [2])
    before = state(loose)
    hits = connector(snaps).erase(user("2")).snapshots
    assert hits == (SnapshotHit("clickstream:2026-10-01", 4, (
        "2026-10-01/country=DE/part-0.parquet", "2026-10-01/part-0.parquet")),)
    assert column(nested) == [7]
    assert state(loose) == before


def test_concurrent_erasures_of_one_file_both_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two erasures rewriting the same file at once both take effect: neither brings back
    the rows the other removed."""
    target = write(tmp_path / "snaps" / "2026-10-01" / "part-0.parquet", [1, 2, 3, 2, 4, 3, 5] * 50)
    rewrite = ParquetFormat.rewrite

    def rewrite_slowly(*args: Any) -> list[int]:
        time.sleep(0.3)  # widen the window in which the other erasure could read the old file
        return rewrite(*args)

    monkeypatch.setattr(ParquetFormat, "rewrite", rewrite_slowly)
    first, second = connector(tmp_path / "snaps"), connector(tmp_path / "snaps")
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda job: job[0].erase(job[1]), [(first, user("2")), (second, user("3"))]))

    assert sorted(outcome.items_erased for outcome in done) == [100, 100]
    assert column(target) == [1, 4, 5] * 50


def test_crash_while_writing_keeps_the_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk error midway leaves the original byte-identical, no temp file, and is transient."""
    path = write(tmp_path / "s" / "p.parquet", [1, 2] * 500, row_group_size=100)
    before = state(path)
    real_write = pq.ParquetWriter.write_table
    calls = []

    def fail_midway(self: pq.ParquetWriter, table: pa.Table, row_group_size: int | None = None) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, table, row_group_size=row_group_size)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_midway)
    with pytest.raises(TransientError, match=r"clickstream: s/p\.parquet: ENOSPC"):
        connector(tmp_path).erase(user("2"))
    assert state(path) == before
    assert os.listdir(path.parent) == ["p.parquet"]


def test_corrupt_file_is_permanent(tmp_path: Path) -> None:
    """A file that is not Parquet fails the system for good, naming the file."""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "p.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PermanentError, match=r"clickstream: s/p\.parquet"):
        connector(tmp_path).erase(user("2"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_permanent(snaps: Path) -> None:
    """Permission denied fails the system for good."""
    (snaps / "2026-10-01" / "part-0.parquet").chmod(0)
    with pytest.raises(PermanentError, match="permission denied"):
        connector(snaps).erase(user("2"))


def test_missing_where_column_is_permanent(snaps: Path) -> None:
    """A file without a where column fails naming the file and the column."""
    conn = connector(snaps, where={"user_id": "user_id", "email": "email"})
    with pytest.raises(PermanentError, match=r"2026-10-01/part-0\.parquet: no column 'email'"):
        conn.erase(Subject({"user_id": ("2",), "email": ("a@x",)}))


def test_missing_location_is_permanent(tmp_path: Path) -> None:
    """A location that does not exist fails the system for good."""
    with pytest.raises(PermanentError, match="clickstream"):
        connector(tmp_path / "nowhere").locate(user("2"))


def test_config_is_read(tmp_path: Path) -> None:
    """A valid table becomes a frozen config with its identifier types."""
    read = config(tmp_path, where={"user_id": "user_id", "mail": "email"}, endpoint_url="http://x")
    assert read.where == (("user_id", "user_id"), ("mail", "email"))
    assert read.identifier_types == {"user_id", "email"}
    assert (read.location, read.format, read.endpoint_url) == (str(tmp_path), "parquet", "http://x")


@pytest.mark.parametrize(("overrides", "key", "problem"), [
    ({"location": "gs://ml-data/clickstream/"}, "location", "must be a local folder or s3://"),
    ({"location": "s3://ml-data/clickstream"}, "location", "must end with '/'"),
    ({"location": "s3://ML_Data/clickstream/"}, "location", "not an S3 bucket name"),
    ({"format": "orc"}, "format", "supported: parquet, jsonl, jsonl.gz, csv, csv.gz, delta"),
    ({"retention_hours": 24}, "retention_hours", 'only applies to format = "delta"'),
    ({"format": "delta", "retention_hours": -1}, "retention_hours", "0 or more"),
    ({"format": "delta", "retention_hours": True}, "retention_hours", "0 or more"),
    ({"addressing_style": "sideways"}, "addressing_style", "must be one of"),
    ({"region": "us east"}, "region", "region name"),
    ({"endpoint_url": "ftp://x"}, "endpoint_url", "http:// or https://"),
    ({"where": {"user_id": "phone"}}, "where.user_id", "unknown identifier type 'phone'"),
    ({"where": {}}, "where", "names no column"),
    ({"wehre": {"user_id": "user_id"}}, "wehre", "unknown key"),
])
def test_bad_config_names_file_system_and_key(overrides: dict[str, Any], key: str, problem: str) -> None:
    """Each mistake is a ConfigError naming the file, the system and the key."""
    with pytest.raises(ConfigError) as caught:
        config(**{"location": "/data/clickstream", **overrides})
    message = str(caught.value)
    assert message.startswith(f"erasure.toml: system 'clickstream': {key}: ")
    assert problem in message


# --- many subjects in one pass ------------------------------------------------------------------


@pytest.fixture
def counted_rewrites(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files each connector swaps in, one entry per rewrite."""
    rewritten: list[str] = []
    real_open = snapshots.open_location

    def open_counting(config: SnapshotConfig) -> Any:
        location = real_open(config)
        real_replace = location.replace

        def replace(rel: str, write: Any, *before_swap: Any) -> Any:
            rewritten.append(rel)
            return real_replace(rel, write, *before_swap)

        location.replace = replace  # type: ignore[method-assign]
        return location

    monkeypatch.setattr(snapshots, "open_location", open_counting)
    return rewritten


def test_erase_many_rewrites_each_file_once_for_all_subjects(snaps: Path, counted_rewrites: list[str]) -> None:
    """Two subjects sharing a file: it is rewritten once without both, and each gets their own
    counts, evidence and hits."""
    two, four_and_three = connector(snaps).erase_many([user("2"), user("4", "3")])
    assert counted_rewrites == ["2026-10-01/part-0.parquet", "2026-10-01/part-1.parquet", "2026-11-01/part-0.parquet"]
    assert column(snaps / "2026-10-01" / "part-0.parquet") == [1, 1]
    assert column(snaps / "2026-10-01" / "part-1.parquet") == [5]
    assert (two.items_erased, four_and_three.items_erased) == (3, 5)
    assert two.snapshots == (SnapshotHit("clickstream:2026-10-01", 3, ("2026-10-01/part-0.parquet",)),)
    assert four_and_three.snapshots == (
        SnapshotHit("clickstream:2026-10-01", 3, ("2026-10-01/part-0.parquet", "2026-10-01/part-1.parquet")),
        SnapshotHit("clickstream:2026-11-01", 2, ("2026-11-01/part-0.parquet",)),
    )
    assert two.evidence == {"files": [
        {"snapshot": "clickstream:2026-10-01", "file": "2026-10-01/part-0.parquet", "rows_removed": 3}]}
    assert [(f["file"], f["rows_removed"]) for f in four_and_three.evidence["files"]] == [
        ("2026-10-01/part-0.parquet", 1), ("2026-10-01/part-1.parquet", 2), ("2026-11-01/part-0.parquet", 2)]


def test_erase_many_leaves_files_without_any_subject_alone(snaps: Path, counted_rewrites: list[str]) -> None:
    """A file holding none of the batch's subjects is neither rewritten nor touched."""
    files = [snaps / "2026-10-01" / "part-1.parquet", snaps / "2026-11-01" / "part-0.parquet"]
    before = [state(p) for p in files]
    outcomes = connector(snaps).erase_many([user("2"), user("99")])
    assert counted_rewrites == ["2026-10-01/part-0.parquet"]
    assert [state(p) for p in files] == before
    assert [o.items_erased for o in outcomes] == [3, 0]
    assert outcomes[1].evidence == {"files": []} and outcomes[1].snapshots == ()


def test_a_row_matching_two_subjects_counts_for_each(snaps: Path) -> None:
    """Two subjects sharing a value both get the shared rows; the file loses them once."""
    outcomes = connector(snaps).erase_many([user("2"), user("2", "5")])
    assert [o.items_erased for o in outcomes] == [3, 4]
    assert column(snaps / "2026-10-01" / "part-0.parquet") == [1, 3, 1]


def test_one_subjects_columns_never_combine_with_anothers(tmp_path: Path) -> None:
    """With two where columns, A's user_id beside B's email is neither's row and stays."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"user_id": [1, 1, 2, 2], "email": ["a@x", "b@x", "a@x", "b@x"]}), path)
    conn = connector(tmp_path, where={"user_id": "user_id", "email": "email"})
    a, b = Subject({"user_id": ("1",), "email": ("a@x",)}), Subject({"user_id": ("2",), "email": ("b@x",)})
    assert conn.locate_many([a, b])[0][0].rows == 1
    assert [o.items_erased for o in conn.erase_many([a, b])] == [1, 1]
    assert list(zip(column(path), column(path, "email"), strict=True)) == [(1, "b@x"), (2, "a@x")]


def test_locate_and_verify_many_answer_per_subject(snaps: Path) -> None:
    """locate_many and verify_many give each subject their own hits and counts, in order."""
    conn = connector(snaps)
    subjects = [user("2"), user("99"), user("4")]
    assert conn.locate_many(subjects) == [
        (SnapshotHit("clickstream:2026-10-01", 3, ("2026-10-01/part-0.parquet",)),),
        (),
        (SnapshotHit("clickstream:2026-10-01", 2, ("2026-10-01/part-1.parquet",)),),
    ]
    assert conn.verify_many(subjects) == [3, 0, 2]


def test_a_subject_lacking_a_where_type_matches_nothing(tmp_path: Path) -> None:
    """A subject without an email, where user_id AND email identify, removes nothing; the other does."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"user_id": [1, 2], "email": ["a@x", "b@x"]}), path)
    conn = connector(tmp_path, where={"user_id": "user_id", "email": "email"})
    outcomes = conn.erase_many([Subject({"user_id": ("1",)}), Subject({"user_id": ("2",), "email": ("b@x",)})])
    assert [o.items_erased for o in outcomes] == [0, 1]
    assert column(path) == [1]


# --- statistics first ---------------------------------------------------------------------------


def corrupt_row_group(path: Path, index: int) -> None:
    """Overwrite one row group's pages with junk, leaving the footer and its statistics intact."""
    group = pq.ParquetFile(path).metadata.row_group(index)
    data = bytearray(path.read_bytes())
    for j in range(group.num_columns):
        chunk = group.column(j)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


def test_row_groups_whose_statistics_exclude_the_values_are_not_read(tmp_path: Path) -> None:
    """A row group whose min/max rule the subject out is skipped: its corrupt pages are never read."""
    path = write(tmp_path / "s" / "p.parquet", list(range(100)) + list(range(1000, 1100)), row_group_size=100)
    corrupt_row_group(path, 1)
    conn = connector(tmp_path)
    assert conn.verify(user("42")) == 1
    assert conn.locate(user("42", "5000")) == (SnapshotHit("clickstream:s", 1, ("s/p.parquet",)),)
    with pytest.raises(PermanentError, match=r"s/p\.parquet: not a readable Parquet file"):
        conn.verify(user("1042"))  # within the corrupt group's bounds: read, and found corrupt


def test_files_whose_statistics_exclude_the_values_are_not_rewritten(tmp_path: Path) -> None:
    """Erasing from a file whose every group rules the subject out reads no page and writes nothing."""
    path = write(tmp_path / "s" / "p.parquet", list(range(100)), row_group_size=50)
    corrupt_row_group(path, 0)
    corrupt_row_group(path, 1)
    before = state(path)
    assert connector(tmp_path).erase(user("420", "-1")).items_erased == 0
    assert state(path) == before


def test_only_where_columns_of_candidate_groups_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting reads the where columns of the row groups that may hold a value, and no others."""
    write(tmp_path / "s" / "p.parquet", [i // 10 for i in range(100)], row_group_size=10)
    reads: list[tuple[int, tuple[str, ...] | None]] = []
    real_read = pq.ParquetFile.read_row_group

    def read_row_group(self: pq.ParquetFile, i: int, columns: list[str] | None = None, **kw: Any) -> pa.Table:
        reads.append((i, tuple(columns) if columns is not None else None))
        return real_read(self, i, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)
    assert connector(tmp_path).verify_many([user("3"), user("7", "70")]) == [10, 10]
    assert reads == [(3, ("user_id",)), (7, ("user_id",))]


def test_statistics_bounds_hold_among_many_values(tmp_path: Path) -> None:
    """Of many values, those between groups read neither; one equal to a group's min or max reads it."""
    path = write(tmp_path / "s" / "p.parquet", list(range(100)) + list(range(1000, 1100)), row_group_size=100)
    corrupt_row_group(path, 1)
    conn = connector(tmp_path)
    assert conn.verify_many([user("0"), user("99"), user("100", "999"), user("1100", "-1")]) == [1, 1, 0, 0]
    for edge in ("1000", "1099"):
        with pytest.raises(PermanentError, match=r"s/p\.parquet: not a readable Parquet file"):
            conn.verify_many([user("5"), user(edge), user("2000")])


def test_erase_finds_with_where_columns_up_to_the_first_hit_then_reads_each_group_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Erasing reads the where columns of candidate groups only until one holds a row, then each
    group in full once to rewrite it: no group is read in full twice."""
    path = write(tmp_path / "s" / "p.parquet", [i // 10 for i in range(100)], row_group_size=10)
    reads: list[tuple[int, tuple[str, ...] | None]] = []
    real_read = pq.ParquetFile.read_row_group

    def read_row_group(self: pq.ParquetFile, i: int, columns: list[str] | None = None, **kw: Any) -> pa.Table:
        reads.append((i, tuple(columns) if columns is not None else None))
        return real_read(self, i, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)
    assert [o.items_erased for o in connector(tmp_path).erase_many([user("3"), user("7", "70")])] == [10, 10]
    assert reads == [(3, ("user_id",))] + [(i, None) for i in range(10)]
    assert column(path) == [i // 10 for i in range(100) if i // 10 not in (3, 7)]


def test_one_batch_matches_each_file_by_its_own_column_type(tmp_path: Path) -> None:
    """Files of one batch whose where column differs in type each match "42" as their type holds it."""
    ints = write(tmp_path / "s" / "a.parquet", [42, 420, 4])
    texts = write(tmp_path / "s" / "b.parquet", ["042", "42", "420"], pa.string())
    floats = write(tmp_path / "s" / "c.parquet", [42.5, 42.0, 4.2], pa.float64())
    outcomes = connector(tmp_path).erase_many([user("42"), user("4.2", "042")])
    assert [o.items_erased for o in outcomes] == [3, 1]
    assert (column(ints), column(texts), column(floats)) == ([420, 4], ["420"], [42.5, 4.2])


def test_string_statistics_skip_by_text_order(tmp_path: Path) -> None:
    """A string column compared as stored skips by its min/max as text: "420" lies outside a group
    of "5".."9", inside "3".."420"."""
    path = write(tmp_path / "s" / "p.parquet", ["5", "9", "3", "420"], pa.string(), row_group_size=2)
    corrupt_row_group(path, 0)
    assert connector(tmp_path, match="exact").verify(user("420")) == 1


# --- older versions -----------------------------------------------------------------------------


def test_older_versions_holding_a_subject_are_purged_and_reported(snaps: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Older versions holding a subject go, counted in that subject's evidence, not in its rows."""
    history = snaps / ".versions" / "2026-11-01" / "part-0.parquet"
    old_two = write(history / "v1", [2, 8])
    old_other = write(history / "v2", [8])
    monkeypatch.setattr(snapshots, "open_location", lambda config: VersionedFolder(Path(config.location)))
    two, nine = connector(snaps).erase_many([user("2"), user("9")])
    assert not old_two.exists() and old_other.exists()
    assert two.items_erased == 3 and nine.items_erased == 0
    assert two.evidence["files"] == [
        {"snapshot": "clickstream:2026-10-01", "file": "2026-10-01/part-0.parquet", "rows_removed": 3},
        {"snapshot": "clickstream:2026-11-01", "file": "2026-11-01/part-0.parquet", "rows_removed": 0,
         "older_versions_removed": 1},
    ]
    assert nine.evidence == {"files": []}


def test_object_store_config_is_read() -> None:
    """An s3:// location and the keys to reach it are read for the S3 location to use."""
    read = config("s3://ml-data/clickstream/", endpoint_url="http://127.0.0.1:5000", region="us-east-1",
                  profile="minio", addressing_style="path", request_checksum_calculation="when_required",
                  response_checksum_validation="when_required")
    assert (read.location, read.region, read.profile, read.addressing_style) == (
        "s3://ml-data/clickstream/", "us-east-1", "minio", "path")
    assert (read.request_checksum_calculation, read.response_checksum_validation) == ("when_required",) * 2
    assert config("s3://ml-data").location == "s3://ml-data"


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "jsonl.gz", "csv", "csv.gz", "delta"])
def test_every_format_is_accepted(fmt: str) -> None:
    """Each supported format reads; retention_hours defaults to 0."""
    read = config("/data/clickstream", format=fmt)
    assert (read.format, read.retention_hours) == (fmt, 0.0)


def test_delta_reads_retention_hours() -> None:
    """A delta system may say how many hours removed files are kept before vacuuming."""
    assert config("/data/clickstream", format="delta", retention_hours=168).retention_hours == 168.0
