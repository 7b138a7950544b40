"""The Delta engine on real tables: folded text, nested paths and missing columns, the DELETE
naming the stored values it counted so that what it deletes is exactly what it counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

deltalake = pytest.importorskip("deltalake")
from deltalake import DeltaTable, write_deltalake  # noqa: E402

from connectors.base import Subject  # noqa: E402
from connectors.errors import PermanentError  # noqa: E402
from connectors.normalize import fold_text  # noqa: E402
from connectors.snapshot import delta as snapshot_delta  # noqa: E402
from connectors.snapshot.config import SnapshotConfig  # noqa: E402
from connectors.snapshot.delta import DeltaEngine  # noqa: E402
from tests.helpers import system_config  # noqa: E402

PERSON = pa.struct([("user_id", pa.int64()), ("email", pa.string())])
SCHEMA = pa.schema([("n", pa.int64()), ("email", pa.string()), ("meta", PERSON), ("people", pa.list_(PERSON))])
EMAILS = ["MARY.SMITH@x", "mary.smithe@x", "Mary.Smith@x", "mary_smith@x", "Rene\u0301@x", "ren\u00e9@x",
          " mary.smith@x", "bob@x"]


def engine(location: Path, where: dict[str, str], **overrides: Any) -> DeltaEngine:
    """An engine over the table; emails fold to lower case, user ids by NFC alone."""
    return DeltaEngine(system_config(SnapshotConfig, {
        "name": "events", "kind": "snapshot", "location": str(location), "format": "delta", "where": where,
        **overrides}, {"user_id": (), "email": ("lower",)}))


def email(typed: str) -> Subject:
    """A subject known by an email, folded as intake folds it."""
    return Subject({"email": (fold_text(typed, ("lower",)),)})


def left(path: Path) -> list[int]:
    """The `n` of the current version's rows, sorted."""
    return sorted(DeltaTable(path).to_pyarrow_table().column("n").to_pylist())


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """One row per email, each with a nested copy and a list of people; written in two commits."""
    path = tmp_path / "events"
    rows = [{"n": n, "email": e, "meta": {"user_id": n, "email": e},
             "people": [{"user_id": 100 + n, "email": "x@x"}, {"user_id": n, "email": e}]}
            for n, e in enumerate(EMAILS)]
    write_deltalake(path, pa.Table.from_pylist(rows[:4], SCHEMA))
    write_deltalake(path, pa.Table.from_pylist(rows[4:], SCHEMA), mode="append")
    return path


@pytest.fixture
def predicates(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The DELETE predicates the engine builds, in order."""
    made: list[str | None] = []
    real = snapshot_delta.predicate

    def record(*args: Any) -> str | None:
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(snapshot_delta, "predicate", record)
    return made


@pytest.mark.parametrize("where", [{"email": "email"}, {"meta.email": "email"}, {"people.email": "email"}])
@pytest.mark.parametrize("typed", ["Mary.Smith@x", "MARY.SMITH@X"])
def test_a_folded_email_deletes_every_spelling_and_nothing_near(table: Path, where: dict[str, str],
                                                                typed: str) -> None:
    """Mary's email typed in any case deletes her two rows, top-level, in a struct or in a list of
    structs; mary.smithe@x, mary_smith@x and " mary.smith@x" stay."""
    outcome = engine(table, where).erase_many([email(typed)])[0]
    assert outcome.items_erased == 2
    assert left(table) == [1, 3, 4, 5, 6, 7]
    assert engine(table, where).verify_many([email(typed)]) == [0]


def test_the_delete_names_the_stored_spellings_counted(table: Path, predicates: list[str | None]) -> None:
    """The predicate compares the column with the values the engine counted, as stored, never folded."""
    engine(table, {"email": "email"}).erase_many([email("mary.smith@x")])
    assert predicates == ["(\"email\" IN ('MARY.SMITH@x', 'Mary.Smith@x'))"]


def test_a_list_element_is_deleted_by_its_position(table: Path, predicates: list[str | None]) -> None:
    """Within a list of structs, the predicate names the element where each value was counted."""
    engine(table, {"people.email": "email"}).erase_many([email("bob@x")])
    assert predicates == ["(\"people\"[2]['email'] IN ('bob@x'))"]
    assert left(table) == [0, 1, 2, 3, 4, 5, 6]


def test_a_decomposed_accent_is_deleted_for_a_composed_request(table: Path) -> None:
    """DataFusion cannot normalize: the stored decomposed "Rene\u0301@x" is named as stored, and goes with
    the composed "ren\u00e9@x" when René is erased."""
    assert engine(table, {"email": "email"}).erase_many([email("REN\u00c9@x")])[0].items_erased == 2
    assert left(table) == [0, 1, 2, 3, 6, 7]


def test_nested_integer_and_folded_email_stay_anded_per_subject(table: Path) -> None:
    """A subject's nested user_id beside another's email is neither's row; each one's own row goes."""
    where = {"meta.user_id": "user_id", "meta.email": "email"}
    mary = Subject({"user_id": ("0",), "email": ("mary.smith@x",)})
    crossed = Subject({"user_id": ("2",), "email": ("bob@x",)})
    outcomes = engine(table, where).erase_many([mary, crossed])
    assert [o.items_erased for o in outcomes] == [1, 0]
    assert left(table) == [1, 2, 3, 4, 5, 6, 7]


def test_older_versions_are_counted_and_purged_by_the_fold(tmp_path: Path) -> None:
    """A spelling only an older version holds is found there, and time travel loses it too."""
    path = tmp_path / "t"
    write_deltalake(path, pa.Table.from_pylist([{"n": 0, "email": "MARY@x", "meta": None, "people": None}], SCHEMA))
    write_deltalake(path, pa.Table.from_pylist([{"n": 1, "email": "Mary@X", "meta": None, "people": None}], SCHEMA),
                    mode="overwrite")
    conn = engine(path, {"email": "email"})
    assert conn.verify_many([email("mary@x")]) == [2]
    outcome = conn.erase_many([email("mary@x")])[0]
    assert (outcome.items_erased, outcome.evidence["versions_held"]) == (1, [0, 1])
    assert conn.verify_many([email("mary@x")]) == [0]


def test_a_missing_column_fails_unless_skipped(table: Path) -> None:
    """A where path the table lacks fails the system naming it; with skip the outcome says so and nothing changes."""
    version = DeltaTable(table).version()
    with pytest.raises(PermanentError, match=r"^snapshot events: the Delta table has no column 'meta\.mail'$"):
        engine(table, {"meta.mail": "email"}).erase_many([email("bob@x")])
    skipping = engine(table, {"meta.mail": "email"}, on_missing_column="skip")
    outcome = skipping.erase_many([email("bob@x")])[0]
    assert (outcome.items_erased, outcome.evidence) == (0, {"table_skipped": {"missing": "meta.mail"}})
    assert (skipping.verify_many([email("bob@x")]), skipping.locate_many([email("bob@x")])) == ([0], [()])
    assert DeltaTable(table).version() == version


def test_a_nested_field_that_is_no_string_or_integer_is_refused(table: Path) -> None:
    """A path ending at a struct or list cannot be erased exactly: refused, naming it."""
    with pytest.raises(PermanentError, match=r"column 'meta' is struct"):
        engine(table, {"meta": "email"}).locate_many([email("bob@x")])
