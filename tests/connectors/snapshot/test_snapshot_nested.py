"""Dotted `where` names reach nested data in real Parquet and JSON lines files: struct fields, and
lists of structs element by element; in CSV a dotted name is a header."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.base import Subject
from connectors.errors import ConfigError, PermanentError
from connectors.snapshot.connector import SnapshotConnector
from tests.helpers import snapshot_connector

PERSON = pa.struct([("user_id", pa.int64()), ("email", pa.string())])
SCHEMA = pa.schema([("n", pa.int64()), ("meta", PERSON), ("people", pa.list_(PERSON))])
ROWS: list[dict[str, Any]] = [  # 42 / mary@x is one subject, 7 / bob@x another
    {"n": 0, "meta": {"user_id": 42, "email": "MARY@x"}, "people": [{"user_id": 1, "email": "a@x"}]},
    {"n": 1, "meta": {"user_id": 7, "email": "bob@x"}, "people": [{"user_id": 1, "email": "a@x"},
                                                                  {"user_id": 42, "email": "Mary@X"}]},
    {"n": 2, "meta": None, "people": None},
    {"n": 3, "meta": {"user_id": 420, "email": "mary@xx"}, "people": []},
    {"n": 4, "meta": {"user_id": 42, "email": "b@x"}, "people": [{"user_id": 7, "email": "BOB@x"}]},
    {"n": 5, "meta": {"user_id": None, "email": None}, "people": [{"user_id": 420, "email": "x"}, None]},
]
MARY = Subject({"user_id": ("42",), "email": ("mary@x",)})


def connector(location: Path, fmt: str, where: dict[str, str], **overrides: Any) -> SnapshotConnector:
    """A connector over files in one format; emails fold to lower case."""
    return snapshot_connector({"name": "events", "kind": "snapshot", "location": str(location), "format": fmt,
                               "where": where, **overrides}, {"user_id": (), "email": ("lower",)})


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema = SCHEMA, **options: Any) -> Path:
    """A Parquet file of these rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema), path, **options)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A JSON lines file of these rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def kept(path: Path) -> list[int]:
    """The `n` of each row left in a Parquet or JSON lines file."""
    if path.suffix == ".parquet":
        return pq.read_table(path).column("n").to_pylist()
    return [json.loads(line)["n"] for line in path.read_text().splitlines()]


@pytest.fixture(params=["parquet", "jsonl"])
def snapshot(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, Path]:
    """The rows in one file of each nesting format, in row groups of two for Parquet."""
    fmt = request.param
    path = tmp_path / "2026-10-01" / f"part-0.{fmt}"
    (write_parquet(path, ROWS, row_group_size=2) if fmt == "parquet" else write_jsonl(path, ROWS))
    return tmp_path, fmt, path


@pytest.mark.parametrize(("where", "subject", "gone"), [
    ({"meta.user_id": "user_id"}, Subject({"user_id": ("42",)}), [0, 4]),
    ({"meta.email": "email"}, Subject({"email": ("mary@x",)}), [0]),
    ({"people.user_id": "user_id"}, Subject({"user_id": ("42",)}), [1]),
    ({"people.email": "email"}, Subject({"email": ("bob@x",)}), [4]),
    ({"people.user_id": "user_id"}, Subject({"user_id": ("420",)}), [5]),
    ({"meta.user_id": "user_id", "meta.email": "email"}, MARY, [0]),
    ({"meta.user_id": "user_id", "people.email": "email"}, MARY, []),
])
def test_a_dotted_path_matches_nested_values(snapshot: tuple[Path, str, Path], where: dict[str, str],
                                             subject: Subject, gone: list[int]) -> None:
    """A struct field matches like a top-level column; a list of structs goes when any element matches."""
    location, fmt, path = snapshot
    conn = connector(location, fmt, where)
    assert conn.verify(subject) == len(gone)
    assert conn.erase(subject).items_erased == len(gone)
    assert kept(path) == [row["n"] for row in ROWS if row["n"] not in gone]
    assert conn.verify(subject) == 0


def test_nested_columns_stay_anded_per_subject(snapshot: tuple[Path, str, Path]) -> None:
    """A's nested user_id beside B's nested email is neither's row; each subject's own row goes."""
    location, fmt, path = snapshot
    conn = connector(location, fmt, {"meta.user_id": "user_id", "meta.email": "email"})
    bob = Subject({"user_id": ("7",), "email": ("bob@x",)})
    crossed = Subject({"user_id": ("42",), "email": ("bob@x",)})
    assert conn.verify_many([crossed]) == [0]  # row 4 has 42 and b@x, row 1 has 7 and bob@x
    assert [o.items_erased for o in conn.erase_many([MARY, bob])] == [1, 1]
    assert kept(path) == [2, 3, 4, 5]


def test_parquet_counting_reads_only_the_top_level_column_of_the_path(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting by meta.user_id reads the meta column of each row group, and no other."""
    write_parquet(tmp_path / "s" / "p.parquet", ROWS, row_group_size=3)
    reads: list[tuple[str, ...] | None] = []
    real_read = pq.ParquetFile.read_row_group

    def read_row_group(self: pq.ParquetFile, i: int, columns: list[str] | None = None, **kw: Any) -> pa.Table:
        reads.append(tuple(columns) if columns is not None else None)
        return real_read(self, i, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)
    assert connector(tmp_path, "parquet", {"meta.user_id": "user_id"}).verify(Subject({"user_id": ("42",)})) == 2
    assert reads == [("meta",), ("meta",)]


def test_parquet_list_of_structs_across_row_groups_and_null_lists(tmp_path: Path) -> None:
    """Element-wise matching holds in every row group, past null lists, empty lists and null elements."""
    rows = [{"n": i, "meta": None, "people": None if i % 5 == 0 else [None, {"user_id": i % 7, "email": None}]}
            for i in range(60)]
    path = write_parquet(tmp_path / "s" / "p.parquet", rows, row_group_size=8)
    assert connector(tmp_path, "parquet", {"people.user_id": "user_id"}).erase(
        Subject({"user_id": ("3",)})).items_erased == len([i for i in range(60) if i % 5 and i % 7 == 3])
    assert kept(path) == [i for i in range(60) if not (i % 5 and i % 7 == 3)]


def test_parquet_nested_struct_statistics_still_prune_an_exact_integer(tmp_path: Path) -> None:
    """A nested integer field, not listed, keeps pruning by statistics: a corrupt group ruled out is never read."""
    rows = [{"n": i, "meta": {"user_id": i, "email": "x"}, "people": []} for i in range(20)]
    path = write_parquet(tmp_path / "s" / "p.parquet", rows, row_group_size=10)
    group = pq.ParquetFile(path).metadata.row_group(1)
    data = bytearray(path.read_bytes())
    for j in range(group.num_columns):
        chunk = group.column(j)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))
    assert connector(tmp_path, "parquet", {"meta.user_id": "user_id"}).verify(Subject({"user_id": ("3",)})) == 1


def test_a_top_level_column_named_with_a_dot_is_preferred(tmp_path: Path) -> None:
    """`meta.user_id` names a top-level column of that very name when there is no struct `meta`."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"meta.user_id": [42, 7], "n": [0, 1]}), path)
    assert connector(tmp_path, "parquet", {"meta.user_id": "user_id"}).erase(
        Subject({"user_id": ("42",)})).items_erased == 1
    assert kept(path) == [1]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_name_reaching_a_top_level_column_and_a_nested_field_is_refused(tmp_path: Path, fmt: str) -> None:
    """`meta.user_id` that is both a top-level name and a nested field fails as ambiguous."""
    if fmt == "parquet":
        path = tmp_path / "s" / "p.parquet"
        path.parent.mkdir()
        pq.write_table(pa.table({"meta.user_id": [7], "meta": pa.array([{"user_id": 42}])}), path)
    else:
        write_jsonl(tmp_path / "s" / "p.jsonl", [{"meta.user_id": 7, "meta": {"user_id": 42}}])
    with pytest.raises(PermanentError, match=r"'meta\.user_id' names both a top-level"):
        connector(tmp_path, fmt, {"meta.user_id": "user_id"}).verify(Subject({"user_id": ("42",)}))


@pytest.mark.parametrize(("where", "missing"), [
    ({"meta.userid": "user_id"}, "meta.userid"), ({"meta.user_id.x": "user_id"}, "meta.user_id.x"),
    ({"nope.user_id": "user_id"}, "nope.user_id"), ({"n.user_id": "user_id"}, "n.user_id"),
])
def test_a_path_the_schema_lacks_fails_naming_it(snapshot: tuple[Path, str, Path], where: dict[str, str],
                                                 missing: str) -> None:
    """A path no column or record reaches fails the system naming it, whatever the format."""
    location, fmt, _ = snapshot
    with pytest.raises(PermanentError, match=rf"part-0\.{fmt}: no (column|record has the key) '{missing}'"):
        connector(location, fmt, where).verify(Subject({"user_id": ("42",)}))


def test_csv_dotted_name_is_a_header(tmp_path: Path) -> None:
    """In CSV `meta.user_id` is simply the header of that name; any header text may be named."""
    path = tmp_path / "s" / "p.csv"
    path.parent.mkdir()
    path.write_text("meta.user_id,e-mail.2\n42,a\n7,b\n")
    conn = connector(tmp_path, "csv", {"meta.user_id": "user_id"})
    assert conn.erase(Subject({"user_id": ("42",)})).items_erased == 1
    assert connector(tmp_path, "csv", {"e-mail.2": "email"}).verify(Subject({"email": ("b",)})) == 1


@pytest.mark.parametrize("column", ["meta..user_id", "meta.user-id", ".meta", "meta.", "meta.2x", "meta. user_id"])
def test_a_dotted_path_must_be_plain_names(tmp_path: Path, column: str) -> None:
    """Outside CSV, a dotted where name of anything but plain names is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"^erasure.toml: system 'events': where\.") as caught:
        connector(tmp_path, "jsonl", {column: "user_id"})
    assert "plain names" in str(caught.value)


def test_toml_dotted_keys_are_paths(tmp_path: Path) -> None:
    """`where = { meta.user_id = "user_id" }` (TOML's nested table) is the path meta.user_id, in `match` too."""
    config = connector(tmp_path, "parquet", {"meta": {"user_id": "user_id"}},  # type: ignore[dict-item]
                       match={"meta": {"user_id": "exact"}}).config
    assert (config.where, config.exact) == ((("meta.user_id", "user_id"),), frozenset({"meta.user_id"}))
