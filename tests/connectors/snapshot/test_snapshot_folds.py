"""The stored side of a snapshot is folded as the request's value was (NFC, trim, lower, upper),
on real Parquet, CSV and JSON lines files: mixed-case emails go whatever case they were typed
in, and nothing near them ever does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.arrow_fold import fold_array
from connectors.base import Subject
from connectors.errors import ConfigError
from connectors.normalize import Fold, fold_text
from connectors.snapshot.connector import SnapshotConnector
from tests.helpers import snapshot_connector

FOLDS: dict[str, Fold] = {"email": ("lower",), "user_id": (), "code": ("trim", "upper"), "name": ("trim", "lower")}
MARY = ["MARY.SMITH@x", "Mary.Smith@x", "mary.smith@x"]  # one person, three spellings
NEIGHBOURS = ["mary.smithe@x", "mary_smith@x", "marysmith@x", "mary.smith@x.org", " mary.smith@x", "mary.smith@xx",
              "mary%smith@x", "mary.smit@x"]
TRICKY = ["MARY@x", "  Mary@x\t", "a b", "e\u0301", "\u00e9", "STRASSE", "straße", "İstanbul", "ΟΔΟΣ", "ﬁ",
          "\u212aelvin", "ǅ", "", " ", "\u00a0x\u00a0", "x\u3000", "é\u0301"]


def connector(location: Path, fmt: str, where: dict[str, str] | None = None, **overrides: Any) -> SnapshotConnector:
    """A connector over files in one format, its identifier types folded as FOLDS says."""
    return snapshot_connector({"name": "crm", "kind": "snapshot", "location": str(location), "format": fmt,
                               "where": where or {"email": "email"}, **overrides}, FOLDS)


def request(id_type: str, *typed: str) -> Subject:
    """A subject as intake makes it: each value folded by its type's fold."""
    return Subject({id_type: tuple(fold_text(value, FOLDS[id_type]) for value in typed)})


def people() -> list[tuple[int, str]]:
    """Rows of (n, email): Mary's three spellings among her neighbours and others."""
    emails = ["bob@x", MARY[0], "mary.smithe@x", "ALICE@x", MARY[1], "mary_smith@x", *NEIGHBOURS[2:], MARY[2], "z@x"]
    return list(enumerate(emails))


def write_parquet(path: Path, rows: list[tuple[int, str]], **options: Any) -> Path:
    """A Parquet file of (n, email) rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"n": [n for n, _ in rows], "email": [e for _, e in rows]}), path, **options)
    return path


def put(path: Path, text: str) -> Path:
    """A text file with exactly this content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def csv_of(rows: list[tuple[int, str]]) -> str:
    """The rows as CSV with a header, CRLF line ends."""
    return "n,email\r\n" + "".join(f'{n},"{e}"\r\n' for n, e in rows)


def jsonl_of(rows: list[tuple[int, str]]) -> str:
    """The rows as JSON lines, each spaced its own way."""
    return "".join(json.dumps({"n": n, "email": e}, separators=(",", ": " if n % 2 else ":")) + "\n" for n, e in rows)


@pytest.mark.parametrize("typed", ["Mary.Smith@x", "MARY.SMITH@X", "mary.smith@x", "mArY.sMiTh@X"])
def test_parquet_mixed_case_emails_go_in_whatever_case_typed(tmp_path: Path, typed: str) -> None:
    """Erasing Mary by her email typed in any case removes her three rows and only them, the rest in order."""
    path = write_parquet(tmp_path / "2026-10-01" / "part-0.parquet", people())
    outcome = connector(tmp_path, "parquet").erase(request("email", typed))
    assert outcome.items_erased == 3
    assert pq.read_table(path).to_pylist() == [{"n": n, "email": e} for n, e in people() if e not in MARY]


@pytest.mark.parametrize("typed", ["Mary.Smith@x", "MARY.SMITH@X"])
def test_csv_mixed_case_emails_go_and_the_rest_stays_byte_for_byte(tmp_path: Path, typed: str) -> None:
    """A CSV snapshot loses Mary's three records; every other record is kept byte for byte, in order."""
    path = put(tmp_path / "2026-10-01" / "part-0.csv", csv_of(people()))
    assert connector(tmp_path, "csv").erase(request("email", typed)).items_erased == 3
    assert path.read_bytes() == csv_of([(n, e) for n, e in people() if e not in MARY]).encode()


@pytest.mark.parametrize("typed", ["Mary.Smith@x", "MARY.SMITH@X"])
def test_jsonl_mixed_case_emails_go_and_the_rest_stays_byte_for_byte(tmp_path: Path, typed: str) -> None:
    """A JSON lines snapshot loses Mary's three lines; every other line is kept byte for byte, in order."""
    path = put(tmp_path / "2026-10-01" / "part-0.jsonl", jsonl_of(people()))
    assert connector(tmp_path, "jsonl").erase(request("email", typed)).items_erased == 3
    assert path.read_bytes() == "".join(
        line for line, (_, e) in zip(jsonl_of(people()).splitlines(True), people(), strict=True) if e not in MARY
    ).encode()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize("stored", NEIGHBOURS)
def test_a_fold_never_widens_to_a_neighbour(tmp_path: Path, fmt: str, stored: str) -> None:
    """Mary.Smith@x never takes mary.smithe@x, mary_smith@x (`_` and `%` are literal), a spaced or longer one."""
    rows = [(1, stored)]
    if fmt == "parquet":
        write_parquet(tmp_path / "s" / "p.parquet", rows)
    else:
        put(tmp_path / "s" / f"p.{fmt}", csv_of(rows) if fmt == "csv" else jsonl_of(rows))
    assert connector(tmp_path, fmt).verify(request("email", "Mary.Smith@x")) == 0


def test_statistics_would_have_skipped_the_subjects_row_group(tmp_path: Path) -> None:
    """A folded column reads every row group: the group holding MARY.SMITH@x has min/max that rule out
    the folded value mary.smith@x, yet its row is found and erased, and the other groups are kept whole."""
    groups = [["alice@x", "bob@x"], ["MARY.SMITH@x", "ZED@x"], ["nina@x", "oscar@x"]]
    path = write_parquet(tmp_path / "s" / "p.parquet", list(enumerate(sum(groups, []))), row_group_size=2)
    stats = pq.ParquetFile(path).metadata.row_group(1).column(1).statistics
    assert not stats.min <= "mary.smith@x" <= stats.max  # pruning by statistics would skip this group
    conn = connector(tmp_path, "parquet")
    assert conn.verify(request("email", "mary.smith@x")) == 1
    assert conn.erase(request("email", "Mary.Smith@x")).items_erased == 1
    assert pq.read_table(path).column("email").to_pylist() == ["alice@x", "bob@x", "ZED@x", "nina@x", "oscar@x"]


def test_an_exact_column_is_compared_as_stored(tmp_path: Path) -> None:
    """`match = "exact"`: the stored text is not folded, so only the spelling asked for matches."""
    path = write_parquet(tmp_path / "s" / "p.parquet", people())
    conn = connector(tmp_path, "parquet", match="exact")
    assert conn.erase(request("email", "MARY.SMITH@x")).items_erased == 1  # folded to mary.smith@x: one row
    assert "mary.smith@x" not in pq.read_table(path).column("email").to_pylist()
    assert {"MARY.SMITH@x", "Mary.Smith@x"} <= set(pq.read_table(path).column("email").to_pylist())


def test_match_names_the_exact_columns_one_by_one(tmp_path: Path) -> None:
    """`match = { code = "exact" }` leaves email folded and compares code as stored."""
    write_parquet(tmp_path / "s" / "p.parquet", [])
    config = connector(tmp_path, "parquet", where={"email": "email", "code": "code"}, match={"code": "exact"}).config
    assert [(key.column, key.fold) for key in config.keys] == [("email", ("lower",)), ("code", None)]


@pytest.mark.parametrize(("match", "key", "problem"), [
    ({"mail": "exact"}, "match.mail", "is not a column of `where`"),
    ({"email": "loose"}, "match.email", 'must be "exact" or "normalized"'),
    (["exact"], "match", '"exact", "normalized", or a table'),
])
def test_a_bad_match_names_the_key(tmp_path: Path, match: Any, key: str, problem: str) -> None:
    """A `match` that names no where column or no known way is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=rf"^erasure.toml: system 'crm': {key}: {problem}"):
        connector(tmp_path, "parquet", match=match)


@pytest.mark.parametrize(("stored", "matches"), [
    ("  mary smith  ", True), ("\tmary smith\r\n", True), ("mary smith", True), ("marysmith", False),
    ("mary  smith", False), ("\u00a0mary smith", False),
])
@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_trim_takes_only_outer_ascii_whitespace(tmp_path: Path, fmt: str, stored: str, matches: bool) -> None:
    """Trim strips spaces, tabs and line ends at both ends, never inner ones, nor a no-break space."""
    rows = [(1, stored)]
    if fmt == "parquet":
        write_parquet(tmp_path / "s" / "p.parquet", rows)
    else:
        put(tmp_path / "s" / f"p.{fmt}", csv_of(rows) if fmt == "csv" else jsonl_of(rows))
    conn = connector(tmp_path, fmt, where={"email": "name"})
    assert conn.verify(request("name", "Mary Smith")) == int(matches)


@pytest.mark.parametrize(("user_ids", "kept"), [
    (pa.array([42, 420, 4, 42], pa.int64()), [420, 4]),
    (pa.array(["42", "420", "042", "42 "], pa.string()), ["420", "042", "42 "]),
])
def test_an_integer_or_untrimmed_column_is_untouched_by_case_rules(tmp_path: Path, user_ids: pa.Array,
                                                                   kept: list[Any]) -> None:
    """With user_id folded by NFC alone, "42" takes 42 and "42", never 420, "042" or "42 "."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"user_id": user_ids}), path)
    conn = connector(tmp_path, "parquet", where={"user_id": "user_id"})
    assert conn.erase(request("user_id", "42")).items_erased == 4 - len(kept)
    assert pq.read_table(path).column("user_id").to_pylist() == kept


@pytest.mark.parametrize(("line", "matches"), [
    ('{"code": 42}', True), ('{"code": "42"}', True), ('{"code": " 42 "}', True), ('{"code": 420}', False),
    ('{"code": "042"}', False), ('{"code": "4 2"}', False), ('{"code": 42.0}', True), ('{"code": true}', False),
])
def test_a_json_number_is_matched_by_value_and_a_string_by_its_fold(tmp_path: Path, line: str, matches: bool) -> None:
    """With code folded by trim and upper, JSON 42 and " 42 " match "42"; 420, "042" and "4 2" do not."""
    put(tmp_path / "s" / "p.jsonl", line + "\n")
    assert connector(tmp_path, "jsonl", where={"code": "code"}).verify(request("code", "42")) == int(matches)


@pytest.mark.parametrize(("field", "matches"), [("42", True), ("42 ", True), (" 42", True), ("420", False),
                                                ("042", False), ("4 2", False)])
def test_a_csv_field_is_folded_as_text(tmp_path: Path, field: str, matches: bool) -> None:
    """A CSV field is text: trim makes "42 " match "42"; nothing makes "042" or "420" match."""
    put(tmp_path / "s" / "p.csv", f'code,n\n"{field}",1\n')
    assert connector(tmp_path, "csv", where={"code": "code"}).verify(request("code", "42")) == int(matches)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_decomposed_stored_accent_matches_a_composed_request(tmp_path: Path, fmt: str) -> None:
    """A stored "rene\u0301@x" (e and a combining accent) is the request's composed "ren\u00e9@x"."""
    rows = [(1, "Rene\u0301@x"), (2, "rene@x"), (3, "RENÉ@x")]
    if fmt == "parquet":
        write_parquet(tmp_path / "s" / "p.parquet", rows)
    else:
        put(tmp_path / "s" / f"p.{fmt}", csv_of(rows) if fmt == "csv" else jsonl_of(rows))
    assert connector(tmp_path, fmt).verify(request("email", "ren\u00e9@x")) == 2


@pytest.mark.parametrize(("stored", "typed", "fold_type", "matches"), [
    ("straße@x", "STRASSE@X", "code", True),      # Python's upper: ß is SS (Arrow's would make it ẞ)
    ("İ@x", "i@x", "email", False),               # Python's lower: İ is i and a dot above, not i
    ("ΟΔΟΣ@x", "οδοσ@x", "email", False),         # Python's lower: a final Σ is ς
    ("ΟΔΟΣ@x", "οδος@x", "email", True),
])
def test_parquet_folds_non_ascii_text_as_the_request_was(tmp_path: Path, stored: str, typed: str, fold_type: str,
                                                         matches: bool) -> None:
    """Non-ASCII stored text is folded by the request's own function, so Arrow's differing case
    mapping neither misses nor widens."""
    write_parquet(tmp_path / "s" / "p.parquet", [(1, stored)])
    conn = connector(tmp_path, "parquet", where={"email": fold_type})
    assert conn.verify(request(fold_type, typed)) == int(matches)


@pytest.mark.parametrize("fold", [(), ("lower",), ("upper",), ("trim",), ("trim", "lower"), ("trim", "upper")])
@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_fold_array_agrees_with_fold_text(fold: Fold, kind: pa.DataType) -> None:
    """Arrow's fold of a column is fold_text of each value, nulls kept null."""
    texts = pa.array([*TRICKY, None], kind)
    assert fold_array(texts, fold).to_pylist() == [fold_text(t, fold) for t in TRICKY] + [None]


@pytest.mark.parametrize("kind", [pa.binary(), pa.dictionary(pa.int32(), pa.string()), pa.large_binary()])
def test_binary_and_dictionary_columns_are_folded_as_text(tmp_path: Path, kind: pa.DataType) -> None:
    """Emails stored as bytes (Spark without the UTF8 annotation) or dictionary-encoded fold like strings."""
    values = [v.encode() if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) else v
              for v in ["MARY.SMITH@x", "mary.smithe@x", "bob@x"]]
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"email": pa.array(values, kind)}), path)
    assert connector(tmp_path, "parquet").erase(request("email", "Mary.Smith@x")).items_erased == 1
    assert pq.read_table(path).column("email").to_pylist() == values[1:]


def test_binary_that_is_not_utf8_matches_nothing_and_stays(tmp_path: Path) -> None:
    """Bytes that are no UTF-8 text cannot be a request's value: they are kept, the rest still matched."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"email": pa.array([b"\xff\xfe", b"MARY@x", b"mary@\xff"], pa.binary())}), path)
    assert connector(tmp_path, "parquet").erase(request("email", "mary@x")).items_erased == 1
    assert pq.read_table(path).column("email").to_pylist() == [b"\xff\xfe", b"mary@\xff"]


def test_two_folded_columns_stay_anded_per_subject(tmp_path: Path) -> None:
    """A's user_id beside B's email in another case is neither's row; each subject's own row goes."""
    path = tmp_path / "s" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"user_id": [1, 1, 2, 2], "email": ["A@X", "B@x", "a@x", "b@X"]}), path)
    conn = connector(tmp_path, "parquet", where={"user_id": "user_id", "email": "email"})
    a = Subject({"user_id": ("1",), "email": (fold_text("a@X", ("lower",)),)})
    b = Subject({"user_id": ("2",), "email": ("b@x",)})
    assert [o.items_erased for o in conn.erase_many([a, b])] == [1, 1]
    assert pq.read_table(path).to_pylist() == [{"user_id": 1, "email": "B@x"}, {"user_id": 2, "email": "a@x"}]
