"""The snapshot kind's look without acting, on text files as they come: gzipped JSON lines, CSV with
another delimiter and a quoted field spanning lines, a file lacking the column skipped; rows counted as
erase() removes them, and exported as the format reads them, files untouched."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.helpers import snapshot_connector, user


def test_text_snapshots_are_counted_and_read_as_their_format_reads_them(tmp_path: Path) -> None:
    """A gzipped JSON lines file and a `;` CSV with a multi-line quoted field: the subject's rows (not
    420's) counted and exported, every byte of every file unchanged until the erase."""
    (tmp_path / "s" / "2026-01-01").mkdir(parents=True)
    jsonl = tmp_path / "s" / "2026-01-01" / "a.jsonl.gz"
    jsonl.write_bytes(gzip.compress(b'{"user_id": 42, "note": "x"}\n{"user_id": 420, "note": "y"}\n'))
    csv_rows = tmp_path / "s" / "2026-01-01" / "b.csv"
    csv_rows.write_text('user_id;note\n42;"two\nlines; and a delimiter"\n420;z\n')
    before = {p: p.read_bytes() for p in (jsonl, csv_rows)}
    for fmt, expected in (("jsonl", [{"user_id": 42, "note": "x"}]),
                          ("csv", [{"user_id": "42", "note": "two\nlines; and a delimiter"}])):
        with snapshot_connector({"name": "clicks", "kind": "snapshot", "location": str(tmp_path / "s"),
                                 "format": fmt, "where": {"user_id": "user_id"}}) as connector:
            preview = connector.preview(user("42"))
            assert preview.counts["snapshots"]["clicks:2026-01-01"]["rows"] == preview.items == 1
            parts = {part.name: list(part.records or ()) for part in connector.export(user("42"))}
            assert parts == {"snapshots/2026-01-01.jsonl": expected}
            assert {p: p.read_bytes() for p in (jsonl, csv_rows)} == before


def test_a_file_lacking_the_column_is_skipped_when_the_system_says_so(tmp_path: Path) -> None:
    """With on_missing_column = "skip", a file without the where column is neither counted nor read."""
    (tmp_path / "s" / "2026-01-01").mkdir(parents=True)
    (tmp_path / "s" / "2026-01-01" / "a.jsonl").write_text('{"user_id": 42}\n')
    (tmp_path / "s" / "2026-01-01" / "b.jsonl").write_text('{"customer": 42}\n')
    with snapshot_connector({"name": "clicks", "kind": "snapshot", "location": str(tmp_path / "s"),
                             "format": "jsonl", "where": {"user_id": "user_id"},
                             "on_missing_column": "skip"}) as connector:
        assert connector.preview(user("42")).items == 1
        parts = {part.name: list(part.records or ()) for part in connector.export(user("42"))}
        assert parts == {"snapshots/2026-01-01.jsonl": [{"user_id": 42}]}
        assert connector.erase(user("42")).items_erased == 1
