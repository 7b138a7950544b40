"""A snapshot file lacking a `where` column is an error, never a miss that would be certified as an
erasure; with `on_missing_column = "skip"` it is left untouched and listed in the evidence."""

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
from tests.helpers import VersionedFolder, snapshot_connector

SUBJECT = Subject({"user_id": ("42",)})


def connector(location: Path, fmt: str, **overrides: Any) -> SnapshotConnector:
    """A connector over files in one format, keyed by user_id."""
    return snapshot_connector({"name": "events", "kind": "snapshot", "location": str(location), "format": fmt,
                               "where": {"user_id": "user_id"}, **overrides}, {"user_id": (), "email": ("lower",)})


def put(path: Path, text: str) -> Path:
    """A text file with exactly this content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def state(path: Path) -> tuple[bytes, int]:
    """A file's bytes and mtime, to prove it was never written."""
    return path.read_bytes(), path.stat().st_mtime_ns


def lines(*records: dict[str, Any]) -> str:
    """JSON lines of these records."""
    return "".join(json.dumps(record) + "\n" for record in records)


@pytest.fixture
def typo(tmp_path: Path) -> Path:
    """Two JSON lines files: one keyed by user_id holding 42, one whose records all say userid."""
    put(tmp_path / "2026-10-01" / "a.jsonl", lines({"user_id": 42, "e": "a"}, {"user_id": 7, "e": "b"}))
    put(tmp_path / "2026-10-01" / "b.jsonl", lines({"userid": 42, "e": "secret"}, {"userid": 7}))
    return tmp_path


@pytest.mark.parametrize("operation", ["erase", "verify", "locate"])
def test_jsonl_file_whose_records_lack_the_key_fails_the_system(typo: Path, operation: str) -> None:
    """A file none of whose records has the where key fails, naming system, file and key, never a value."""
    before = state(typo / "2026-10-01" / "b.jsonl")
    with pytest.raises(PermanentError, match=r"^snapshot events: 2026-10-01/b\.jsonl: no record has the key "
                                             r"'user_id'$") as caught:
        getattr(connector(typo, "jsonl"), operation)(SUBJECT)
    assert "42" not in str(caught.value) and "secret" not in str(caught.value)
    assert state(typo / "2026-10-01" / "b.jsonl") == before


def test_jsonl_file_where_some_records_have_the_key_is_read(tmp_path: Path) -> None:
    """Records lacking the key are nobody's when another record of the file has it."""
    path = put(tmp_path / "s" / "p.jsonl", lines({"other": 42}, {"user_id": 42}, {"user_id": 7}))
    assert connector(tmp_path, "jsonl").erase(SUBJECT).items_erased == 1
    assert path.read_text() == lines({"other": 42}, {"user_id": 7})


@pytest.mark.parametrize("text", ["", "\n\n", "  \r\n"])
def test_jsonl_file_without_records_is_fine(tmp_path: Path, text: str) -> None:
    """An empty file, or one of blank lines, has no record to lack the key: nothing to erase, no error."""
    path = put(tmp_path / "s" / "p.jsonl", text)
    before = state(path)
    assert connector(tmp_path, "jsonl").erase(SUBJECT).items_erased == 0
    assert state(path) == before


def test_skip_leaves_the_file_and_lists_it_in_the_evidence(typo: Path) -> None:
    """With on_missing_column = "skip", the file lacking the key is untouched and listed; the rest is erased."""
    skipped = typo / "2026-10-01" / "b.jsonl"
    before = state(skipped)
    outcome = connector(typo, "jsonl", on_missing_column="skip").erase(SUBJECT)
    assert outcome.items_erased == 1
    assert outcome.evidence["files_skipped"] == [{"file": "2026-10-01/b.jsonl", "missing": "user_id"}]
    assert [f["file"] for f in outcome.evidence["files"]] == ["2026-10-01/a.jsonl"]
    assert state(skipped) == before


def test_skip_applies_to_verify_and_locate(typo: Path) -> None:
    """verify and locate count the files having the key and pass over the others."""
    conn = connector(typo, "jsonl", on_missing_column="skip")
    assert conn.verify(SUBJECT) == 1
    assert [hit.files for hit in conn.locate(SUBJECT)] == [("2026-10-01/a.jsonl",)]


def test_no_skipped_file_no_skipped_list(typo: Path) -> None:
    """An outcome lists skipped files only when there were some."""
    (typo / "2026-10-01" / "b.jsonl").unlink()
    outcome = connector(typo, "jsonl", on_missing_column="skip").erase(SUBJECT)
    assert "files_skipped" not in outcome.evidence


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_without_the_column_fail_naming_it(tmp_path: Path, fmt: str) -> None:
    """A header or schema without the where column fails naming system, file and column, even with no rows."""
    if fmt == "csv":
        put(tmp_path / "s" / "p.csv", "userid,event\n")
    else:
        (tmp_path / "s").mkdir()
        pq.write_table(pa.table({"userid": pa.array([], pa.int64())}), tmp_path / "s" / "p.parquet")
    with pytest.raises(PermanentError, match=rf"^snapshot events: s/p\.{fmt}: no column 'user_id'$"):
        connector(tmp_path, fmt).verify(SUBJECT)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_files_lacking_the_column_are_skipped_when_asked(tmp_path: Path, fmt: str) -> None:
    """With skip, the file without the column is untouched and listed; the one with it is erased."""
    if fmt == "csv":
        lacking = put(tmp_path / "s" / "a.csv", "userid\n42\n")
        put(tmp_path / "s" / "b.csv", "user_id\n42\n7\n")
    else:
        (tmp_path / "s").mkdir()
        lacking = tmp_path / "s" / "a.parquet"
        pq.write_table(pa.table({"userid": [42]}), lacking)
        pq.write_table(pa.table({"user_id": [42, 7]}), tmp_path / "s" / "b.parquet")
    before = state(lacking)
    outcome = connector(tmp_path, fmt, on_missing_column="skip").erase(SUBJECT)
    assert (outcome.items_erased, outcome.evidence["files_skipped"]) == (1, [{"file": f"s/a.{fmt}",
                                                                            "missing": "user_id"}])
    assert state(lacking) == before


def test_a_malformed_file_is_not_skipped(tmp_path: Path) -> None:
    """Skip is for a missing column only: a file that is not JSON still fails the system."""
    put(tmp_path / "s" / "p.jsonl", "{not json\n")
    with pytest.raises(PermanentError, match="line 1 is not valid JSON"):
        connector(tmp_path, "jsonl", on_missing_column="skip").erase(SUBJECT)


@pytest.mark.parametrize("value", ["ignore", "", 1, True])
def test_on_missing_column_takes_fail_or_skip(tmp_path: Path, value: Any) -> None:
    """Any other on_missing_column is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"^erasure.toml: system 'events': on_missing_column: "):
        connector(tmp_path, "jsonl", on_missing_column=value)


def test_on_missing_column_defaults_to_fail(tmp_path: Path) -> None:
    """Without the key, a file lacking a where column fails the system."""
    assert connector(tmp_path, "jsonl").config.on_missing_column == "fail"


def test_an_older_version_lacking_the_column_is_kept_and_listed_when_skipping(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """In a store keeping older versions, one written before the column existed is left and listed once."""
    from connectors.snapshot import connector as snapshots

    put(tmp_path / "s" / "p.jsonl", lines({"user_id": 42}, {"user_id": 7}))
    older = [put(tmp_path / ".versions" / "s" / "p.jsonl" / f"v{i}", lines({"uid": 42})) for i in (1, 2)]
    monkeypatch.setattr(snapshots, "open_location", lambda config: VersionedFolder(Path(config.location)))
    outcome = connector(tmp_path, "jsonl", on_missing_column="skip").erase(SUBJECT)
    assert outcome.items_erased == 1 and all(path.exists() for path in older)
    assert outcome.evidence["files_skipped"] == [{"file": "s/p.jsonl", "missing": "user_id", "older_version": True}]
    with pytest.raises(PermanentError, match=r"s/p\.jsonl: no record has the key 'user_id'"):
        connector(tmp_path, "jsonl").erase(SUBJECT)
