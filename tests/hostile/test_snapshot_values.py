"""Snapshot systems with generated values: Parquet (column types drawn at random), JSON lines and CSV
(gzipped or not) in tmp folders. Erasing subject A never changes a row of anyone whose value differs
from A's once folded (byte for byte in JSON lines and CSV, value for value and in order in Parquet),
never touches a file without A's rows (bytes and mtime), and removes every row of A's."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import assume, example, given
from hypothesis import strategies as st

from connectors.base import Subject, as_integer
from connectors.normalize import Fold
from tests.helpers import (
    Examples,
    cleaned,
    date_texts,
    folds,
    identifier,
    integer_texts,
    owner,
    pieces,
    snapshot_connector,
    stored_values,
)

TEXT_TYPES = {"string": pa.string(), "large_string": pa.large_string(), "binary": pa.binary(),
              "dictionary": pa.dictionary(pa.int32(), pa.string())}
NUMBER_TYPES = {"int64": pa.int64(), "int32": pa.int32(), "uint16": pa.uint16(), "float64": pa.float64(),
                "decimal": pa.decimal128(20, 2)}
TIME_TYPES = {"date32": pa.date32(), "timestamp": pa.timestamp("s")}
DAY = date(2024, 1, 1)


@dataclass(frozen=True)
class Column:
    """How the `ident` column holds values: its family and Arrow type."""

    family: str  # "text", "number", "time"
    name: str
    arrow: pa.DataType


def columns() -> st.SearchStrategy[Column]:
    """A Parquet column type for the identifier, drawn among text, number and time types."""
    return st.sampled_from([Column("text", n, t) for n, t in TEXT_TYPES.items()]
                           + [Column("number", n, t) for n, t in NUMBER_TYPES.items()]
                           + [Column("time", n, t) for n, t in TIME_TYPES.items()])


def held(column: Column, raw: str) -> list[Any]:
    """What the column stores for a subject typed `raw` and its neighbours (numbers near it, days around)."""
    if column.family == "text":
        texts = stored_values([raw])
        return [t.encode() for t in texts] if column.name == "binary" else texts
    if column.family == "number":
        number = as_integer(raw.strip())
        near = {0, 1, 7, 42, 420, 4, 65535} | ({number, number + 1, number * 10, abs(number)} if number else set())
        kept = sorted(n for n in near if 0 <= n < 2**16)  # every number type here holds these
        if column.name == "float64":
            return [float(n) for n in kept] + [0.5, 42.5, -0.0]
        return [Decimal(n) for n in kept] + [Decimal("42.50")] if column.name == "decimal" else kept
    days = [DAY + timedelta(days=d) for d in range(-3, 4)]
    if column.name == "date32":
        return days
    return [datetime.combine(day, datetime.min.time()) + timedelta(seconds=s) for day in days for s in (0, 1, 3600)]


def whose(value: Any, fold: Fold | None) -> str | None:
    """The value a stored one belongs to: its text folded, a number written plainly, or a day or a moment
    written as ISO 8601 (None: nobody's)."""
    if isinstance(value, bytes):
        return owner(value.decode(), fold)
    if isinstance(value, str):
        return owner(value, fold)
    if isinstance(value, float | Decimal):
        return str(int(value)) if value == int(value) else None
    if isinstance(value, int):
        return str(value)
    return str(value.isoformat())


def write_parquet(path: Path, column: Column, values: list[Any], group: int) -> None:
    """A Parquet file of (n, ident) rows in row groups of `group`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = column.arrow.value_type if pa.types.is_dictionary(column.arrow) else column.arrow
    idents = pa.array(values, kind)
    idents = idents.dictionary_encode() if pa.types.is_dictionary(column.arrow) else idents
    pq.write_table(pa.table({"n": pa.array(range(len(values)), pa.int64()), "ident": idents}), path,
                   row_group_size=group)


def csv_record(n: int, value: str, ending: str) -> bytes:
    """One CSV record as Python's csv module writes it."""
    out = io.StringIO()
    csv.writer(out, lineterminator=ending).writerow([n, value])
    return out.getvalue().encode()


def json_record(n: int, value: Any, ascii_only: bool) -> bytes:
    """One JSON line."""
    return (json.dumps({"n": n, "ident": value}, ensure_ascii=ascii_only) + "\n").encode()


def json_held(raw: str) -> list[Any]:
    """What JSON lines hold for a subject typed `raw`: its neighbours as strings, and numbers near it."""
    number = as_integer(raw.strip())
    numbers: list[Any] = [0, 42, 420, 4, 42.0, 1e2, 42.5, True, None, [raw], {"v": raw}]
    numbers += [number, number + 1, float(number) if abs(number) < 2**53 else 0] if number is not None else []
    return [*stored_values([raw]), *numbers]


def file_bytes(path: Path) -> bytes:
    """A record file's content, decompressed if gzipped."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def subject_of(raw: str, fold: Fold) -> tuple[Subject, str]:
    """Subject A as intake makes it from `raw` (refused values are not generated)."""
    value = cleaned(identifier("ident", fold=fold), raw)
    assume(value is not None)
    assert value is not None
    return Subject({"ident": (value,)}), value


def connector(location: Path, fmt: str, fold: Fold, exact: bool) -> Any:
    """A snapshot system over the folder, matching `ident` folded (or exactly)."""
    raw = {"name": "hostile", "kind": "snapshot", "location": str(location), "format": fmt, "where": {"ident": "ident"}}
    return snapshot_connector(raw | ({"match": "exact"} if exact else {}), {"ident": fold})


def spelled(column: Column) -> st.SearchStrategy[str]:
    """How A's value is typed for a column of this family."""
    return {"text": pieces(), "number": integer_texts(), "time": date_texts()}[column.family]


def test_parquet_erasure_takes_exactly_the_subjects_rows(tmp_path: Path, examples: Examples) -> None:
    """Parquet of any column type, folded or exact, in small row groups: rows of values that differ from
    A's once folded stay, in order; A's rows go; a file without them keeps its bytes and mtime."""

    @examples(120)
    @given(data=st.data(), column=columns(), fold=folds(), exact=st.booleans(), group=st.integers(1, 8))
    @example(data=None, column=Column("time", "timestamp", pa.timestamp("s")), fold=(), exact=False, group=4)
    def check(data: Any, column: Column, fold: Fold, exact: bool, group: int) -> None:
        raw = "2024-01-01T00:00" if data is None else data.draw(spelled(column), "raw")
        subject, value = subject_of(raw, fold)
        stored = held(column, raw)
        mine = [whose(v, None if exact else fold) == value for v in stored]
        root = tmp_path / f"ex-{os.urandom(6).hex()}"
        write_parquet(root / "s1" / "part-0.parquet", column, stored, group)
        others = [v for v, m in zip(stored, mine, strict=True) if not m]
        write_parquet(root / "s2" / "part-0.parquet", column, others, group)
        untouched = root / "s2" / "part-0.parquet"
        before = (untouched.read_bytes(), untouched.stat().st_mtime_ns)
        outcome = connector(root, "parquet", fold, exact).erase(subject)
        kept = pq.read_table(root / "s1" / "part-0.parquet").to_pylist()
        assert [row["n"] for row in kept] == [n for n, m in enumerate(mine) if not m]
        assert [row["ident"] for row in kept] == others
        assert (untouched.read_bytes(), untouched.stat().st_mtime_ns) == before
        assert outcome.items_erased == sum(mine)

    check()


def test_record_files_erasure_takes_exactly_the_subjects_lines(tmp_path: Path, examples: Examples) -> None:
    """JSON lines (strings, numbers, other JSON) and CSV (any quoting, line ending), gzipped or not: every
    line of a value that differs from A's once folded is kept byte for byte, A's lines go, and a file
    without them keeps its bytes and mtime."""

    @examples(150)
    @given(fmt=st.sampled_from(("jsonl", "jsonl.gz", "csv", "csv.gz")), raw=pieces() | integer_texts(),
           fold=folds(), exact=st.booleans(), ascii_only=st.booleans(), ending=st.sampled_from(("\n", "\r\n")))
    def check(fmt: str, raw: str, fold: Fold, exact: bool, ascii_only: bool, ending: str) -> None:
        subject, value = subject_of(raw, fold)
        compare = None if exact else fold
        if fmt.startswith("jsonl"):
            stored = json_held(raw)
            header = b""
            lines = [json_record(n, v, ascii_only) for n, v in enumerate(stored)]
            mine = [_json_whose(v, compare) == value for v in stored]
        else:
            stored = stored_values([raw])
            header = f"n,ident{ending}".encode()
            lines = [csv_record(n, v, ending) for n, v in enumerate(stored)]
            mine = [owner(v, compare) == value for v in stored]
        root = tmp_path / f"ex-{os.urandom(6).hex()}"
        suffix = "." + fmt
        held_file, other_file = root / "s1" / f"part-0{suffix}", root / "s2" / f"part-0{suffix}"
        kept = [line for line, m in zip(lines, mine, strict=True) if not m]
        for path, chosen in ((held_file, lines), (other_file, kept)):
            path.parent.mkdir(parents=True, exist_ok=True)
            body = header + b"".join(chosen)
            path.write_bytes(gzip.compress(body, mtime=0) if fmt.endswith(".gz") else body)
        before = (other_file.read_bytes(), other_file.stat().st_mtime_ns)
        outcome = connector(root, fmt, fold, exact).erase(subject)
        assert file_bytes(held_file) == header + b"".join(kept)
        assert (other_file.read_bytes(), other_file.stat().st_mtime_ns) == before
        assert outcome.items_erased == sum(mine)

    check()


def _json_whose(value: Any, fold: Fold | None) -> str | None:
    """Whose a JSON value is: a string folded, a number equal to an integer written plainly, else nobody's."""
    if isinstance(value, str):
        return owner(value, fold)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    number = int(value)
    return str(number) if as_integer(str(number)) is not None else None


def test_a_timestamp_column_takes_only_the_iso_spelling(tmp_path: Path) -> None:
    """"2024-01-01 00:00:00", "2024-01-01T00:00" and "2024-01-01" are one moment to Arrow's parser: only
    the ISO 8601 spelling, "2024-01-01T00:00:00", takes its row (the others used to take it too)."""
    path = tmp_path / "s1" / "part-0.parquet"
    moments = [datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 0, 1)]
    write_parquet(path, Column("time", "timestamp", pa.timestamp("s")), moments, 8)
    system = connector(tmp_path, "parquet", (), False)
    for other in ("2024-01-01 00:00:00", "2024-01-01T00:00", "2024-01-01", "2024-01-01T00:00:00.000"):
        assert system.erase(Subject({"ident": (other,)})).items_erased == 0
    assert system.erase(Subject({"ident": ("2024-01-01T00:00:00",)})).items_erased == 1
    assert pq.read_table(path).column("ident").to_pylist() == [moments[1]]


def test_a_decimal_column_too_narrow_for_a_value_matches_nothing(tmp_path: Path) -> None:
    """A 19-digit id cannot be in a decimal(20, 2) column: it matches nothing there, and the other files are
    still read (it used to overflow into a decimal of precision 21 and fail the system for good)."""
    write_parquet(tmp_path / "s1" / "part-0.parquet", Column("number", "decimal", pa.decimal128(20, 2)),
                  [Decimal(42), Decimal("999999999999999999")], 8)
    system = connector(tmp_path, "parquet", (), False)
    assert system.erase(Subject({"ident": ("9223372036854775808",)})).items_erased == 0
    assert system.erase(Subject({"ident": ("42",)})).items_erased == 1


def test_a_float_zero_stored_negative_is_taken_by_zero(tmp_path: Path) -> None:
    """A float column's -0.0 equals 0, so "0" takes it as it takes 0.0 (Arrow's is_in told the two apart by
    their bits, and left the row while verify counted nothing left)."""
    path = tmp_path / "s1" / "part-0.parquet"
    write_parquet(path, Column("number", "float64", pa.float64()), [0.0, -0.0, 1.0, 0.5], 1)
    system = connector(tmp_path, "parquet", (), False)
    assert system.erase(Subject({"ident": ("0",)})).items_erased == 2
    assert pq.read_table(path).column("ident").to_pylist() == [1.0, 0.5]
