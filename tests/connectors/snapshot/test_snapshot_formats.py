"""Each snapshot file format against real files: round trips that keep what they must, and
type-aware matching that never widens."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.base import Subject
from connectors.errors import PermanentError
from connectors.snapshot.connector import SnapshotConnector
from tests.helpers import snapshot_connector, user


def connector(location: Path, fmt: str, **overrides: Any) -> SnapshotConnector:
    """A connector over a location of files in one format, keyed by user_id."""
    return snapshot_connector({"name": "events", "kind": "snapshot", "location": str(location), "format": fmt,
                               "where": {"user_id": "user_id"}, **overrides})


def put(path: Path, data: bytes) -> Path:
    """A file with exactly these bytes, gzipped when its name ends .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def content(path: Path) -> bytes:
    """A file's bytes, decompressed when it is gzipped."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


# --- JSON lines ---------------------------------------------------------------------------------

JSONL = (b'{"user_id": 42, "event": "a"}\n'
         b'{ "event" : "b",   "user_id":7, "note": "caf\\u00e9 \xc3\xa9" }\r\n'
         b'\n'
         b'{"user_id": "42", "event": "c"}\n'
         b'{"event": "d", "user_id": 420, "nested": {"user_id": 42}}')
JSONL_KEPT = (b'{ "event" : "b",   "user_id":7, "note": "caf\\u00e9 \xc3\xa9" }\r\n'
              b'\n'
              b'{"event": "d", "user_id": 420, "nested": {"user_id": 42}}')


@pytest.mark.parametrize("name", ["part-0.jsonl", "part-0.jsonl.gz"])
def test_jsonl_kept_lines_stay_byte_for_byte(tmp_path: Path, name: str) -> None:
    """Erasing drops the subject's lines and copies every other line, spacing and escapes included."""
    path = put(tmp_path / "2026-10-01" / name, JSONL)
    outcome = connector(tmp_path, "jsonl").erase(user("42"))
    assert outcome.items_erased == 2
    assert content(path) == JSONL_KEPT


def test_gzipped_jsonl_is_rewritten_gzipped(tmp_path: Path) -> None:
    """A .jsonl.gz file is gzip after its rewrite, and the `jsonl.gz` format reads it too."""
    path = put(tmp_path / "s" / "p.jsonl.gz", JSONL)
    connector(tmp_path, "jsonl.gz").erase(user("7"))
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert b'"user_id":7' not in gzip.decompress(path.read_bytes())


@pytest.mark.parametrize(("fmt", "taken"), [
    ("jsonl", ["a.jsonl", "b.jsonl.gz"]),
    ("jsonl.gz", ["a.jsonl", "b.jsonl.gz"]),
    ("csv", ["c.csv", "d.csv.gz"]),
    ("parquet", []),
])
def test_a_format_takes_its_own_endings_only(tmp_path: Path, fmt: str, taken: list[str]) -> None:
    """A system reads the files its format names, plain or gzipped, and no other file."""
    for name in ["a.jsonl", "b.jsonl.gz", "e.json", "f.jsonl.bak"]:
        put(tmp_path / "s" / name, b'{"user_id": 42}\n')
    for name in ["c.csv", "d.csv.gz", "g.tsv"]:
        put(tmp_path / "s" / name, b"user_id\n42\n")
    hits = connector(tmp_path, fmt).locate(user("42"))
    assert [file for hit in hits for file in hit.files] == [f"s/{name}" for name in taken]


@pytest.mark.parametrize(("line", "matches"), [
    ('{"user_id": 42}', True),
    ('{"user_id": "42"}', True),
    ('{"user_id": 42.0}', True),
    ('{"user_id": 4.2e1}', True),
    ('{"user_id": 420}', False),
    ('{"user_id": "042"}', False),
    ('{"user_id": "42 "}', False),
    ('{"user_id": " 42"}', False),
    ('{"user_id": 4}', False),
    ('{"user_id": ""}', False),
    ('{"user_id": 42.5}', False),
    ('{"user_id": 42.000000000000000001}', False),
    ('{"user_id": "4.2e1"}', False),
    ('{"user_id": "42.0"}', False),
    ('{"user_id": null}', False),
    ('{"user_id": [42]}', False),
    ('{"user_id": {"id": 42}}', False),
    ('{"other": 42}\n{"user_id": 7}', False),
    ('{"user": {"user_id": 42}}\n{"user_id": 7}', False),
])
def test_jsonl_matches_by_type(tmp_path: Path, line: str, matches: bool) -> None:
    """"42" matches a JSON 42, "42" or integral 42.0, and nothing near it."""
    put(tmp_path / "s" / "p.jsonl", line.encode() + b"\n")
    assert connector(tmp_path, "jsonl").verify(user("42")) == int(matches)


@pytest.mark.parametrize("line", ['{"user_id": true}', '{"user_id": false}'])
def test_jsonl_booleans_match_nothing(tmp_path: Path, line: str) -> None:
    """true is no 1 and false no 0, though Python counts them as ints."""
    put(tmp_path / "s" / "p.jsonl", line.encode() + b"\n")
    assert connector(tmp_path, "jsonl").verify(user("1", "0", "true", "false")) == 0


def test_jsonl_huge_integral_float_matches_exactly(tmp_path: Path) -> None:
    """9007199254740993.0 is that number, not 2**53 that a float would make of it."""
    put(tmp_path / "s" / "p.jsonl", b'{"user_id": 9007199254740993.0}\n')
    conn = connector(tmp_path, "jsonl")
    assert (conn.verify(user("9007199254740992")), conn.verify(user("9007199254740993"))) == (0, 1)


@pytest.mark.parametrize(("bad", "problem"), [
    (b'{"user_id": 42, "secret-content"\n', "line 2 is not valid JSON"),
    (b'[42, "secret-content"]\n', "line 2 is not a JSON object"),
    (b'{"user_id": "\xff secret-content"}\n', "line 2 is not valid JSON"),
])
def test_jsonl_malformed_line_is_permanent(tmp_path: Path, bad: bytes, problem: str) -> None:
    """A bad line fails the system naming the file and line number, not its content; nothing changes."""
    path = put(tmp_path / "s" / "p.jsonl", b'{"user_id": 42}\n' + bad)
    before = path.read_bytes()
    with pytest.raises(PermanentError, match=rf"events: s/p\.jsonl: {problem}") as caught:
        connector(tmp_path, "jsonl").erase(user("42"))
    assert "secret" not in str(caught.value)
    assert path.read_bytes() == before


def test_truncated_gzip_is_permanent(tmp_path: Path) -> None:
    """A cut-off .gz file fails the system for good, naming the file."""
    path = tmp_path / "s" / "p.jsonl.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(b'{"user_id": 42}\n' * 1000)[:40])
    with pytest.raises(PermanentError, match=r"s/p\.jsonl\.gz: not a readable gzipped JSON lines file"):
        connector(tmp_path, "jsonl").verify(user("42"))


# --- CSV ----------------------------------------------------------------------------------------

CSV = ('\ufeffuser_id;note;"the ""when"""\r\n'
       '42;"line one\r\nline two; still 42";2026-10-01\r\n'
       '7;"a ""quoted"" word";2026-10-02\r\n'
       '420;plain;2026-10-03\r\n'
       '"42";"quoted id";2026-10-04\r\n'
       '8;"multi\nline\rkept";2026-10-05').encode()
CSV_KEPT = ('\ufeffuser_id;note;"the ""when"""\r\n'
            '7;"a ""quoted"" word";2026-10-02\r\n'
            '420;plain;2026-10-03\r\n'
            '8;"multi\nline\rkept";2026-10-05').encode()


@pytest.mark.parametrize("name", ["part-0.csv", "part-0.csv.gz"])
def test_csv_keeps_header_dialect_and_kept_records_byte_for_byte(tmp_path: Path, name: str) -> None:
    """Records spanning lines go whole; the header, delimiter, quoting and line endings stay."""
    path = put(tmp_path / "2026-10-01" / name, CSV)
    assert connector(tmp_path, "csv").erase(user("42")).items_erased == 2
    assert content(path) == CSV_KEPT
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"


@pytest.mark.parametrize(("field", "matches"), [
    ("42", True), ('"42"', True), ("420", False), ("042", False), ('"42 "', False), ('" 42"', False),
    ("4", False), ('""', False), ("42.0", False), ("4.2e1", False),
])
def test_csv_field_text_must_equal_the_value(tmp_path: Path, field: str, matches: bool) -> None:
    """A CSV field matches "42" only when its text is exactly 42."""
    put(tmp_path / "s" / "p.csv", f"user_id,event\n{field},x\n".encode())
    assert connector(tmp_path, "csv").verify(user("42")) == int(matches)


@pytest.mark.parametrize("value", ['a"b', "%", "*", "a%", "_"])
def test_csv_quotes_and_patterns_match_only_themselves(tmp_path: Path, value: str) -> None:
    """A quote, % or * in a value is plain text: it matches only that exact field."""
    fields = ['"a""b"', "%", "*", "a%", "_", "ab", "a", "x", '"a""b "']
    put(tmp_path / "s" / "p.csv", ("user_id\n" + "\n".join(fields) + "\n").encode())
    assert connector(tmp_path, "csv").verify(Subject({"user_id": (value,)})) == 1


@pytest.mark.parametrize(("body", "problem"), [
    ("user_id,event\n42,a\n7,b,secret\n", "line 3 has 3 fields, the header 2"),
    ('user_id,event\n42,a\n"7"secret,b\n', "line 3 is not well-formed CSV"),
    ("event,when\nsecret,1\n", "no column 'user_id'"),
    ("user_id,user_id\n42,43\n", "column 'user_id' appears twice"),
])
def test_csv_malformed_is_permanent(tmp_path: Path, body: str, problem: str) -> None:
    """A record that does not fit its header fails the system, naming the file and line, not content."""
    path = put(tmp_path / "s" / "p.csv", body.encode())
    before = path.read_bytes()
    with pytest.raises(PermanentError, match=rf"events: s/p\.csv: {problem}") as caught:
        connector(tmp_path, "csv").erase(user("42"))
    assert "secret" not in str(caught.value)
    assert path.read_bytes() == before


def test_csv_single_column_with_commas_is_refused(tmp_path: Path) -> None:
    """A one-column file whose records hold commas is refused rather than split into fields."""
    put(tmp_path / "s" / "p.csv", b"user_id\n42,7\n")
    with pytest.raises(PermanentError, match="line 2 has 2 fields"):
        connector(tmp_path, "csv").erase(user("42"))


def test_csv_tab_delimited_is_read_by_its_header(tmp_path: Path) -> None:
    """A tab-separated file is split on tabs, so a comma inside a field is text."""
    path = put(tmp_path / "s" / "p.csv", b"event\tuser_id\na,b\t42\nc\t7\n")
    assert connector(tmp_path, "csv").erase(user("42")).items_erased == 1
    assert path.read_bytes() == b"event\tuser_id\nc\t7\n"


# --- Parquet ------------------------------------------------------------------------------------


def test_parquet_keeps_schema_metadata_codecs_and_row_groups(tmp_path: Path) -> None:
    """A rewritten file keeps field and schema metadata, key-value metadata, each column's codec,
    the format version and its row-group sizes."""
    schema = pa.schema([pa.field("user_id", pa.int64(), metadata={"pii": "yes"}), pa.field("event", pa.string())],
                       metadata={"source": "clickstream", "version": "3"})
    ids = [i % 5 for i in range(3000)]
    table = pa.table({"user_id": ids, "event": [f"e{i}" for i in range(3000)]}, schema=schema)
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(table, path, compression={"user_id": "zstd", "event": "gzip"}, row_group_size=1000,
                   version="2.4")
    before = pq.ParquetFile(path).metadata
    assert connector(tmp_path, "parquet").erase(user("3")).items_erased == 600
    after = pq.ParquetFile(path)
    assert after.schema_arrow.equals(schema, check_metadata=True)
    assert after.schema_arrow.field("user_id").metadata == {b"pii": b"yes"}
    assert after.metadata.metadata == before.metadata
    assert after.metadata.format_version == before.format_version
    assert [after.metadata.row_group(0).column(j).compression for j in range(2)] == ["ZSTD", "GZIP"]
    assert [after.metadata.row_group(i).num_rows for i in range(after.metadata.num_row_groups)] == [800] * 3
    assert after.read().column("event").to_pylist() == [f"e{i}" for i in range(3000) if i % 5 != 3]


@pytest.mark.parametrize(("id_type", "ids", "matched"), [
    (pa.int64(), [42, 420, 4, -42, 0], [42]),
    (pa.int32(), [42, 420, 4], [42]),
    (pa.uint64(), [42, 2**64 - 1, 420], [42]),
    (pa.string(), ["42", "420", "042", "42 ", " 42", "4", "", "42.0"], ["42"]),
    (pa.large_string(), ["42", "420", "042"], ["42"]),
    (pa.binary(), [b"42", b"420", b"042"], [b"42"]),
    (pa.float64(), [42.0, 420.0, 42.5, 4.2, 41.99999999999999], [42.0]),
    (pa.float32(), [42.0, 420.0, 42.5], [42.0]),
    (pa.decimal128(6, 2), [Decimal("42.00"), Decimal("420.00"), Decimal("42.50")], [Decimal("42.00")]),
    (pa.bool_(), [True, False], []),
    (pa.dictionary(pa.int32(), pa.string()), ["42", "420", "042"], ["42"]),
])
def test_parquet_matches_by_column_type(tmp_path: Path, id_type: pa.DataType, ids: list[Any],
                                        matched: list[Any]) -> None:
    """"42" removes what the column's type holds as 42, exactly, and none of its neighbours."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"user_id": pa.array(ids, id_type)}), path)
    assert connector(tmp_path, "parquet").erase(user("42")).items_erased == len(matched)
    assert pq.read_table(path).column("user_id").to_pylist() == [i for i in ids if i not in matched]


@pytest.mark.parametrize("value", ["1", "true", "True", "4.2", "0"])
def test_parquet_float_and_bool_columns_ignore_non_integers(tmp_path: Path, value: str) -> None:
    """A float column matches plain integers only; a boolean column matches nothing."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"user_id": pa.array([4.2, 0.5], pa.float64()), "flag": [True, False]}), path)
    where = {"flag": "user_id"}
    assert connector(tmp_path, "parquet").verify(user(value)) == 0
    assert connector(tmp_path, "parquet", where=where).verify(user(value)) == 0


@pytest.mark.parametrize("value", ["a'b", 'a"b', "%", "*", "a%", "_"])
def test_parquet_quotes_and_patterns_match_only_themselves(tmp_path: Path, value: str) -> None:
    """A quote, % or * in a value matches the same text and nothing else."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    ids = ["a'b", 'a"b', "%", "*", "a%", "_", "ab", "a", "x", "a'b "]
    pq.write_table(pa.table({"user_id": ids}), path)
    assert connector(tmp_path, "parquet").erase(Subject({"user_id": (value,)})).items_erased == 1
    assert pq.read_table(path).column("user_id").to_pylist() == [i for i in ids if i != value]


def test_jsonl_row_shapes_round_trip_through_json(tmp_path: Path) -> None:
    """Lines of any top-level field order and nesting are kept exactly as json.dumps wrote them."""
    lines = [json.dumps({"z": i, "user_id": i % 3, "deep": {"user_id": 1, "list": [1, 2]}}) for i in range(30)]
    path = put(tmp_path / "s" / "p.jsonl", ("\n".join(lines) + "\n").encode())
    assert connector(tmp_path, "jsonl").erase(user("1")).items_erased == 10
    assert path.read_text() == "".join(f"{line}\n" for i, line in enumerate(lines) if i % 3 != 1)


def test_parquet_float_matches_only_integers_it_holds_exactly(tmp_path: Path) -> None:
    """2**53 + 1 is no float: it does not widen onto the float 2**53 beside it."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"user_id": pa.array([2.0**53], pa.float64())}), path)
    conn = connector(tmp_path, "parquet")
    assert (conn.verify(user(str(2**53 + 1))), conn.verify(user(str(2**53)))) == (0, 1)


def test_parquet_not_written_by_arrow_keeps_its_key_value_metadata(tmp_path: Path) -> None:
    """A file without a stored Arrow schema (Spark's) keeps its key-value metadata and gains none."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    table = pa.table({"user_id": [1, 42, 3]})
    with pq.ParquetWriter(path, table.schema, store_schema=False) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({"org.apache.spark.sql.parquet.row.metadata": '{"type":"struct"}'})
    before = pq.ParquetFile(path).metadata.metadata
    assert connector(tmp_path, "parquet").erase(user("42")).items_erased == 1
    assert pq.ParquetFile(path).metadata.metadata == before


def test_csv_delimiter_in_a_quoted_column_name_does_not_count(tmp_path: Path) -> None:
    """A header's quoted name holding semicolons still splits on its commas."""
    path = put(tmp_path / "s" / "p.csv", b'user_id,"a;b;c"\n42,x\n7,y\n')
    assert connector(tmp_path, "csv").erase(user("42")).items_erased == 1
    assert path.read_bytes() == b'user_id,"a;b;c"\n7,y\n'


def test_jsonl_byte_order_mark_is_kept(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark before the first line is read past and written back."""
    path = put(tmp_path / "s" / "p.jsonl", b'\xef\xbb\xbf{"user_id": 7}\n{"user_id": 42}\n')
    assert connector(tmp_path, "jsonl").erase(user("42")).items_erased == 1
    assert path.read_bytes() == b'\xef\xbb\xbf{"user_id": 7}\n'
