"""The Delta engine against real Delta tables written by deltalake into a temporary folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

deltalake = pytest.importorskip("deltalake")
from deltalake import DeltaTable, write_deltalake  # noqa: E402
from deltalake.exceptions import DeltaError  # noqa: E402

from connectors.base import SnapshotHit, Subject  # noqa: E402
from connectors.errors import ConfigError, PermanentError, TransientError  # noqa: E402
from connectors.snapshot import delta as snapshot_delta  # noqa: E402
from connectors.snapshot.config import SnapshotConfig  # noqa: E402
from connectors.snapshot.delta import DeltaEngine, predicate  # noqa: E402
from connectors.snapshot.paths import ArrowPath  # noqa: E402
from tests.helpers import system_config, user  # noqa: E402

SCHEMA = pa.schema([("user_id", pa.int64()), ("email", pa.string()), ("code", pa.string())])
HOSTILE = ["'", "%", "*", "\\", "' OR '1'='1", "42) OR (1=1", '"', "42 OR 1=1", "4%", "\\' OR 1=1 --"]


def engine(location: Path | str, where: dict[str, str] | None = None, **overrides: Any) -> DeltaEngine:
    """An engine over the table, configured as erasure.toml would."""
    return DeltaEngine(system_config(SnapshotConfig, {
        "name": "events", "kind": "snapshot", "location": str(location), "format": "delta",
        "where": where or {"user_id": "user_id"}, **overrides}, frozenset({"user_id", "email", "code"})))


def rows(*records: tuple[int, str, str]) -> pa.Table:
    """Events as (user_id, email, code)."""
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in records], SCHEMA)


def current(path: Path, version: int | None = None) -> list[tuple[Any, ...]]:
    """A version's rows as (user_id, email, code), sorted."""
    return sorted(tuple(r.values()) for r in DeltaTable(path, version=version).to_pyarrow_table().to_pylist())


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """Four versions: 42 written (0), appended again (1), overwritten away (2), written back (3)."""
    path = tmp_path / "events"
    write_deltalake(path, rows((42, "alice@example.com", "42"), (420, "b@x", "420"), (4, "c@x", "42 ")))
    write_deltalake(path, rows((42, "alice@example.com", "a"), (5, "d@x", "d")), mode="append")
    write_deltalake(path, rows((7, "e@x", "e"), (8, "f@x", "f")), mode="overwrite")
    write_deltalake(path, rows((42, "alice@example.com", "g"), (9, "h@x", "h")), mode="append")
    return path


def test_locate_reports_exactly_the_versions_that_held_the_subject(table: Path) -> None:
    """Versions 0, 1 and 3 held 42 (1, 2, 1 rows); version 2, written after an overwrite, did not."""
    hits = engine(table).locate_many([user("42")])[0]
    assert [(h.snapshot, h.rows, len(h.files)) for h in hits] == [("events:0", 1, 1), ("events:1", 2, 2),
                                                                   ("events:3", 1, 1)]


def test_locate_changes_nothing(table: Path) -> None:
    """Locating commits no version and deletes no file."""
    files = sorted(p.name for p in table.rglob("*"))
    engine(table).locate_many([user("42")])
    assert DeltaTable(table).version() == 3 and sorted(p.name for p in table.rglob("*")) == files


def test_erase_deletes_exactly_the_subjects_rows(table: Path) -> None:
    """42 goes from the current version; 420, 4 and the rest stay."""
    outcome = engine(table).erase_many([user("42")])[0]
    assert outcome.items_erased == 1
    assert current(table) == [(7, "e@x", "e"), (8, "f@x", "f"), (9, "h@x", "h")]


def test_erase_reports_the_versions_that_held_the_subject(table: Path) -> None:
    """The outcome's snapshots are the versions found before anything was deleted."""
    outcome = engine(table).erase_many([user("42")])[0]
    assert [h.snapshot for h in outcome.snapshots] == ["events:0", "events:1", "events:3"]
    assert outcome.evidence["versions_held"] == [0, 1, 3]


def test_time_travel_returns_nothing_of_the_subject_after_erase(table: Path) -> None:
    """Only the newest version can still be loaded, and it holds no row of 42; older ones fail."""
    engine(table).erase_many([user("42")])
    latest = DeltaTable(table).version()
    assert all(r[0] != 42 for r in current(table, latest))
    for version in range(latest):
        with pytest.raises(DeltaError):
            DeltaTable(table, version=version).to_pyarrow_table()


def test_files_that_held_the_subject_are_gone_from_disk(table: Path) -> None:
    """Every data file any version held 42 in is deleted by the vacuum."""
    hits = engine(table).locate_many([user("42")])[0]
    held = {table / f for hit in hits for f in hit.files}
    assert held and all(p.exists() for p in held)
    outcome = engine(table).erase_many([user("42")])[0]
    assert not any(p.exists() for p in held)
    assert outcome.evidence["files_vacuumed"] >= len(held) and outcome.evidence["log_entries_removed"] > 0


def test_no_byte_of_the_table_holds_the_subjects_email_after_erase(table: Path) -> None:
    """Data files, log statistics and the delete's own commit (its predicate) lose the email."""
    email = b"alice@example.com"
    assert any(email in p.read_bytes() for p in table.rglob("*") if p.is_file())
    engine(table, {"email": "email"}).erase_many([Subject({"email": ("alice@example.com",)})])
    assert not [p for p in table.rglob("*") if p.is_file() and email in p.read_bytes()]


def test_verify_counts_rows_reachable_by_time_travel(table: Path) -> None:
    """Before: the current row plus the rows of older versions' files; after: 0."""
    subject = user("42")
    assert engine(table).verify_many([subject]) == [3]
    engine(table).erase_many([subject])
    assert engine(table).verify_many([subject]) == [0]


def test_verify_counts_history_when_the_current_version_is_clean(tmp_path: Path) -> None:
    """A subject overwritten away is still there for time travel until erased."""
    path = tmp_path / "t"
    write_deltalake(path, rows((42, "a", "a")))
    write_deltalake(path, rows((7, "b", "b")), mode="overwrite")
    assert engine(path).verify_many([user("42")]) == [1]
    assert engine(path).erase_many([user("42")])[0].items_erased == 0
    assert engine(path).verify_many([user("42")]) == [0]


def test_two_subjects_in_one_erase_have_their_own_counts(table: Path) -> None:
    """One delete; 42's outcome counts its row, 9's its own."""
    before = DeltaTable(table).version()
    first, second = engine(table).erase_many([user("42"), user("9")])
    assert (first.items_erased, second.items_erased) == (1, 1)
    assert [h.snapshot for h in second.snapshots] == ["events:3"]
    history = [c["operation"] for c in DeltaTable(table).history() if c["version"] > before]
    assert history.count("DELETE") <= 1 and current(table) == [(7, "e@x", "e"), (8, "f@x", "f")]


def test_columns_are_anded_per_subject(tmp_path: Path) -> None:
    """One subject's user_id beside another's email is neither's row and stays."""
    path = tmp_path / "t"
    write_deltalake(path, rows((42, "a@x", "1"), (7, "b@x", "2"), (42, "b@x", "3")))
    where = {"user_id": "user_id", "email": "email"}
    subjects = [Subject({"user_id": ("42",), "email": ("a@x",)}), Subject({"user_id": ("7",), "email": ("b@x",)})]
    outcomes = engine(path, where).erase_many(subjects)
    assert [o.items_erased for o in outcomes] == [1, 1] and current(path) == [(42, "b@x", "3")]


@pytest.mark.parametrize("value", ["42abc", "4.2e1", "", " 42", "42 ", "0x2a", "4_2", "042", "-0", "+42"])
def test_an_integer_column_takes_only_plainly_written_integers(table: Path, value: str) -> None:
    """Values that are not plain integers match no row and delete nothing."""
    before = current(table)
    assert engine(table).erase_many([user(value)])[0].items_erased == 0
    assert current(table) == before


def test_a_string_column_compares_exactly(tmp_path: Path) -> None:
    """"42" in a string column removes "42" only: "420", "42 " and " 42" stay."""
    path = tmp_path / "t"
    write_deltalake(path, rows((1, "a", "42"), (2, "b", "420"), (3, "c", "42 "), (4, "d", " 42")))
    assert engine(path, {"code": "code"}).erase_many([Subject({"code": ("42",)})])[0].items_erased == 1
    assert [r[0] for r in current(path)] == [2, 3, 4]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_deletes_only_the_row_holding_exactly_it(tmp_path: Path, value: str) -> None:
    """A quote, wildcard, backslash or SQL fragment is a value: it matches itself, never widens."""
    path = tmp_path / "t"
    write_deltalake(path, rows((1, value, "x"), (2, "42", "y"), (3, "a'b", "z"), (4, "%%", "w"), (5, "\\\\", "v"),
                               (6, value + "x", "u")))
    outcome = engine(path, {"email": "email"}).erase_many([Subject({"email": (value,)})])[0]
    assert outcome.items_erased == 1 and [r[0] for r in current(path)] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_absent_from_the_table_deletes_nothing(table: Path, value: str) -> None:
    """Neither a string nor an integer column matches a hostile value the table does not hold."""
    before = current(table)
    for where, id_type in (({"email": "email"}, "email"), ({"user_id": "user_id"}, "user_id")):
        assert engine(table, where).erase_many([Subject({id_type: (value,)})])[0].items_erased == 0
    assert current(table) == before and DeltaTable(table).version() == 3


def test_unusual_characters_are_matched_exactly(tmp_path: Path) -> None:
    """Non-ASCII, control characters and quotes round-trip through the predicate."""
    path = tmp_path / "t"
    odd = "é😀\t\x00o'brien"
    write_deltalake(path, rows((1, odd, "x"), (2, odd[:-1], "y")))
    assert engine(path, {"email": "email"}).erase_many([Subject({"email": (odd,)})])[0].items_erased == 1
    assert [r[0] for r in current(path)] == [2]


def test_the_predicate_spells_unsafe_characters_as_chr() -> None:
    """No quote or backslash of a stored value reaches the SQL text."""
    text = predicate([ArrowPath("email", "email", (), pa.string())], [{0: {(): {"' OR '1'='1\\"}}}])
    assert text == "(\"email\" IN (concat(chr(39), ' OR ', chr(39), '1', chr(39), '=', chr(39), '1', chr(92))))"


def test_a_subject_without_a_where_value_matches_nothing(table: Path) -> None:
    """No predicate at all: no version is committed, no row deleted."""
    where = {"user_id": "user_id", "email": "email"}
    paths = [ArrowPath("user_id", "user_id", (), pa.int64()), ArrowPath("email", "email", (), pa.string())]
    assert predicate(paths, [{0: {(): {42}}}]) is None
    assert engine(table, where).erase_many([user("42")])[0].items_erased == 0
    assert DeltaTable(table).version() == 3


def test_no_subjects_do_nothing(table: Path) -> None:
    """An empty batch returns empty lists and commits nothing."""
    e = engine(table)
    assert (e.locate_many([]), e.erase_many([]), e.verify_many([])) == ([], [], [])
    assert DeltaTable(table).version() == 3


def test_a_second_erase_finds_nothing(table: Path) -> None:
    """Erasing twice: the second pass deletes nothing and commits nothing."""
    engine(table).erase_many([user("42")])
    version = DeltaTable(table).version()
    outcome = engine(table).erase_many([user("42")])[0]
    assert (outcome.items_erased, outcome.snapshots, DeltaTable(table).version()) == (0, (), version)


def test_a_delete_wider_than_counted_is_undone(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the predicate ever matched other rows, the delete is restored and the erase fails."""
    monkeypatch.setattr(snapshot_delta, "predicate", lambda *args: '"user_id" > 0')
    before = current(table)
    with pytest.raises(PermanentError, match="restored version 3"):
        engine(table).erase_many([user("42")])
    assert current(table) == before


def test_retention_keeps_recent_versions_and_exempts_until_it_ends(table: Path) -> None:
    """With retention_hours, versions removed within it stay readable and the subject is exempt."""
    outcome = engine(table, retention_hours=2).erase_many([user("42")])[0]
    assert outcome.items_erased == 1 and outcome.exempt_reason and outcome.recheck_at is not None
    assert all(r[0] != 42 for r in current(table))
    assert (42, "alice@example.com", "g") in current(table, 3)
    assert engine(table, retention_hours=2).verify_many([user("42")]) == [3]


def test_a_missing_table_fails_permanently_naming_the_system(tmp_path: Path) -> None:
    """A folder that is no Delta table is a PermanentError naming the system."""
    (tmp_path / "empty").mkdir()
    for location in (tmp_path / "empty", tmp_path / "absent"):
        with pytest.raises(PermanentError, match="snapshot events: .* is not a Delta table"):
            engine(location).locate_many([user("42")])


def test_a_where_column_missing_from_the_schema_fails_permanently(table: Path) -> None:
    """An unknown column is refused before anything is deleted, without any value in the message."""
    with pytest.raises(PermanentError, match="no column 'account'") as raised:
        engine(table, {"account": "user_id"}).erase_many([user("42")])
    assert "42" not in str(raised.value) and DeltaTable(table).version() == 3


def test_a_partition_column_in_where_is_refused(tmp_path: Path) -> None:
    """Rows cannot be counted by a column the data files do not hold."""
    path = tmp_path / "t"
    write_deltalake(path, rows((42, "a", "x")), partition_by=["user_id"])
    with pytest.raises(PermanentError, match="partition column"):
        engine(path).locate_many([user("42")])


def test_a_commit_conflict_is_transient(table: Path) -> None:
    """A concurrent writer committing first makes the delete a TransientError."""
    ours, theirs = DeltaTable(table), DeltaTable(table)
    theirs.delete('"user_id" = 9')
    with pytest.raises(TransientError, match="concurrent writer"), engine(table)._errors():
        ours.delete('"user_id" = 9')


def test_hits_name_the_files_relative_to_the_table(table: Path) -> None:
    """A hit's files are paths inside the table folder."""
    hit = engine(table).locate_many([user("42")])[0][0]
    assert isinstance(hit, SnapshotHit) and all((table / f).is_file() and "/" not in f for f in hit.files)


def test_a_delta_table_in_an_object_store_is_refused_at_start_up() -> None:
    """The engine reads local files only: an s3:// Delta location stops start-up, naming the key."""
    with pytest.raises(ConfigError, match=r"^erasure.toml: system 'events': location: a Delta table must be local"):
        engine("s3://ml-data/events/")
