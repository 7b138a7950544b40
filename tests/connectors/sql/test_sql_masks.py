"""The sql kind's masks, `{ hash = true }` and `{ random = true }`, against real SQLite, PostgreSQL
and MariaDB: cut to the column's length, keyed, never applied twice, refused where the column cannot
take them; their config; and the worker handing its pseudonym key to the connector."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import Subject
from connectors.errors import ConfigError, PermanentError
from connectors.sql.config import Mask, SqlConfig
from connectors.sql.connector import SqlConnector
from connectors.sql.masks import Masker
from tests.helpers import sql_connector, system_config, system_table, write_config
from tests.helpers.runtime import ListDispatch
from worker.config import load
from worker.keys import KeyRing
from worker.runtime import Runtime

KEY = bytes(range(32))
HASH, RANDOM = {"hash": True}, {"random": True}
NOTES = [  # id, email, code, bio, age, tiny
    (1, "a@x.io", "code-of-a-one", "the first note of a", 31, "a1"),
    (2, "a@x.io", "code-of-a-two", None, 31, "a2"),
    (3, "xa@x.io", "code-of-xa", "a neighbour's note", 40, "xa"),
    (4, "a@x.io.uk", "code-of-a-uk", "another neighbour's note", 50, "uk"),
]


def masking(url: str, assign: dict[str, Any], key: bytes | None = KEY) -> SqlConnector:
    """A connector anonymizing the notes of a subject's email with this `set`, given the key."""
    connector = sql_connector({"name": "notes-db", "kind": "sql", "url": url, "tables": [
        {"name": "notes", "where": {"email": "email"}, "action": "anonymize", "set": assign}]})
    if key is not None:
        connector.use_pseudonym_key(lambda: key)
    return connector


def by_email(email: str) -> Subject:
    """A subject known by one email."""
    return Subject({"email": (email,)})


@pytest.fixture
def notes(sql_url: str) -> Iterator[sa.Engine]:
    """A notes table with text columns of several lengths, an integer one, and the subject's neighbours."""
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    table = sa.Table("notes", metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("email", sa.String(100)), sa.Column("code", sa.String(20)), sa.Column("bio", sa.Text),
                     sa.Column("age", sa.Integer), sa.Column("tiny", sa.String(10)), mysql_engine="InnoDB")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip(("id", "email", "code", "bio", "age", "tiny"), row, strict=True))
                                      for row in NOTES])
    yield engine
    engine.dispose()


def rows(engine: sa.Engine) -> dict[int, tuple[Any, ...]]:
    """Every note by id."""
    with engine.connect() as conn:
        return {row[0]: tuple(row) for row in conn.execute(sa.text("SELECT * FROM notes"))}


def checksum(engine: sa.Engine, ids: set[int]) -> str:
    """A digest of the listed notes, every column as the driver returns it."""
    return hashlib.sha256(repr(sorted(r for i, r in rows(engine).items() if i in ids)).encode()).hexdigest()


def test_hash_is_keyed_and_cut_to_the_column_length(notes: sa.Engine, sql_url: str) -> None:
    """A VARCHAR(20) gets 20 characters, a TEXT 64, both starting with the keyed HMAC of the stored text."""
    others = checksum(notes, {3, 4})
    with masking(sql_url, {"code": HASH, "bio": HASH}) as sql:
        assert sql.erase(by_email("a@x.io")).items_erased == 2
    after = rows(notes)
    code, bio = after[1][2], after[1][3]
    keyed = [hmac.new(KEY, text, hashlib.sha256).hexdigest() for text in (b"code-of-a-one", b"the first note of a")]
    assert (len(code), len(bio)) == (20, 64)
    assert code[:12] == keyed[0][:12] and bio[:56] == keyed[1][:56]
    assert not hashlib.sha256(b"code-of-a-one").hexdigest().startswith(code[:12])
    assert after[2][3] is None  # NULL has nothing to hide: it stays NULL
    assert checksum(notes, {3, 4}) == others


def test_random_has_the_column_length_and_differs_between_rows(notes: sa.Engine, sql_url: str) -> None:
    """Each of the subject's rows gets its own random letters and digits, as long as the column (TEXT: 32)."""
    with masking(sql_url, {"code": RANDOM, "bio": RANDOM, "tiny": "gone"}) as sql:
        sql.erase(by_email("a@x.io"))
    after = rows(notes)
    first, second = after[1][2], after[2][2]
    assert len(first) == len(second) == 20 and first != second and first.isalnum()
    assert first not in ("code-of-a-one", "code-of-a-two") and len(after[1][3]) == 32
    assert after[1][5] == after[2][5] == "gone"


def test_a_second_erase_keeps_the_masks(notes: sa.Engine, sql_url: str) -> None:
    """Masked values are known for masks: a second erase changes nothing, and verify counts 2 then 0."""
    with masking(sql_url, {"code": RANDOM, "email": HASH}) as sql:
        assert sql.verify(by_email("a@x.io")) == 2
        sql.erase(by_email("a@x.io"))
        first = rows(notes)
        assert sql.verify(by_email("a@x.io")) == 0
    with masking(sql_url, {"code": RANDOM, "bio": "x"}) as sql:  # matched by email no more: nothing to do
        assert sql.erase(by_email("a@x.io")).items_erased == 0
    assert rows(notes) == first


def test_masks_under_a_where_that_still_matches_are_not_masked_again(notes: sa.Engine, sql_url: str) -> None:
    """Rows still matched after their erase keep their pseudonyms: no hash of a hash."""
    connector = sql_connector({"name": "notes-db", "kind": "sql", "url": sql_url, "tables": [
        {"name": "notes", "where": {"age": "user_id"}, "action": "anonymize", "set": {"code": HASH}}]})
    connector.use_pseudonym_key(lambda: KEY)
    with connector as sql:
        assert sql.erase(Subject({"user_id": ("31",)})).items_erased == 2
        first = rows(notes)
        assert sql.verify(Subject({"user_id": ("31",)})) == 0
        assert sql.erase(Subject({"user_id": ("31",)})).items_erased == 0
    assert rows(notes) == first


@pytest.mark.parametrize(("column", "mask", "problem"), [
    ("age", HASH, "a hash needs a text column"),
    ("age", RANDOM, "a random needs a text column"),
    ("tiny", HASH, "holds at most 10 characters"),
])
def test_a_column_that_cannot_take_a_mask_fails_and_changes_nothing(notes: sa.Engine, sql_url: str, column: str,
                                                                    mask: dict[str, bool], problem: str) -> None:
    """A hash into an integer column (or one too short) is a PermanentError naming system, table and column."""
    before = checksum(notes, {1, 2, 3, 4})
    with masking(sql_url, {"bio": "x", column: mask}) as sql, pytest.raises(PermanentError) as caught:
        sql.erase(by_email("a@x.io"))
    assert f"sql system 'notes-db': table 'notes' column '{column}': {problem}" in str(caught.value)
    assert "a@x.io" not in str(caught.value)
    assert checksum(notes, {1, 2, 3, 4}) == before


def test_masking_without_a_key_fails_and_changes_nothing(notes: sa.Engine, sql_url: str) -> None:
    """A connector the worker gave no pseudonym key refuses to mask, naming the system."""
    before = checksum(notes, {1, 2, 3, 4})
    with masking(sql_url, {"code": HASH}, key=None) as sql, pytest.raises(PermanentError, match="no pseudonym key"):
        sql.erase(by_email("a@x.io"))
    assert checksum(notes, {1, 2, 3, 4}) == before


def test_a_table_without_a_primary_key_cannot_be_masked(sql_url: str) -> None:
    """Masks change rows one by one, by key: a table with none fails for good, naming it."""
    engine = sa.create_engine(sql_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (email VARCHAR(100), code VARCHAR(40))")
        conn.exec_driver_sql("INSERT INTO notes VALUES ('a@x.io', 'c')")
    engine.dispose()
    with masking(sql_url, {"code": HASH}) as sql, pytest.raises(PermanentError, match="'notes' has no primary key"):
        sql.erase(by_email("a@x.io"))


def test_config_reads_masks() -> None:
    """`{ hash = true }` and `{ random = true }` are masks beside the literal values."""
    config = system_config(SqlConfig, {"name": "notes-db", "kind": "sql", "url": "sqlite:///x.db", "tables": [
        {"name": "notes", "where": {"email": "email"}, "action": "anonymize",
         "set": {"code": HASH, "bio": RANDOM, "tiny": "null"}}]})
    table = config.tables[0]
    assert table.masks == (("code", Mask("hash")), ("bio", Mask("random")))
    assert table.literals == (("tiny", None),)


@pytest.mark.parametrize(("value", "key", "problem"), [
    ({"hash": True, "random": True}, "set.code", "one of the two"),
    ({}, "set.code", "one of the two"),
    ({"hash": "yes"}, "set.code: hash", "must be true, not 'yes'"),
    ({"random": False}, "set.code: random", "must be true, not False"),
    ({"md5": True}, "set.code: md5", "unknown key (expected one of: hash, random)"),
    ([1], "set.code", "must be a string, number"),
])
def test_config_refuses_a_bad_mask(value: Any, key: str, problem: str) -> None:
    """A mask that is not exactly `{ hash = true }` or `{ random = true }` is a ConfigError naming the key."""
    raw = {"name": "notes-db", "kind": "sql", "url": "sqlite:///x.db", "tables": [
        {"name": "notes", "where": {"email": "email"}, "action": "anonymize", "set": {"code": value}}]}
    with pytest.raises(ConfigError) as caught:
        system_config(SqlConfig, raw)
    assert str(caught.value).startswith("erasure.toml: system 'notes-db'")
    assert f"{key}: {problem}" in str(caught.value)


def test_pseudonym_key_is_derived_from_the_subject_key() -> None:
    """The pseudonym key is HKDF("erasure-worker/pseudonym") of the subject key: kept across a rotation
    of the secrets, changed with the subject key, and none of the other keys."""
    ring = KeyRing(("s" * 32,), "subject-" * 4)
    rotated = KeyRing(("t" * 32, "s" * 32), "subject-" * 4)
    assert ring.pseudonym_key() == rotated.pseudonym_key() != KeyRing(("s" * 32,), "other-s-" * 4).pseudonym_key()
    assert ring.pseudonym_key() not in (ring.guard_key(), ring.session_key())
    extract = hmac.digest(bytes(32), ("subject-" * 4).encode(), "sha256")  # RFC 5869, no salt
    assert ring.pseudonym_key() == hmac.digest(extract, b"erasure-worker/pseudonym\x01", "sha256")


def test_the_worker_gives_its_connectors_the_pseudonym_key(notes: sa.Engine, sql_url: str, tmp_path: Path) -> None:
    """A sql system made by the runtime hashes under the key ring's pseudonym key."""
    tables = [{"name": "notes", "where": {"email": "email"}, "action": "anonymize", "set": {"code": HASH}}]
    rt = Runtime(load(write_config(tmp_path, system_table("notes-db", "sql", url=sql_url, tables=tables))),
                 dispatch=ListDispatch())
    try:
        rt.connector("notes-db").erase(by_email("a@x.io"))
        expected = Masker(rt.keyring.pseudonym_key()).mask(Mask("hash"), "code-of-a-one", 20)
    finally:
        rt.close()
    assert rows(notes)[1][2] == expected
