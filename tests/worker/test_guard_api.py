"""The guard list's Python API, as a training job uses it: `Guard.load` of an exported file with the
subject key (a wrong key refused in one line), `contains` and `filter` removing exactly the guarded
rows (42 never takes 420; text folded as its type says), over plain, dictionary-encoded and chunked
columns and DataFrames, and an import that needs no store."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests.helpers import MakeRuntime, drain, stub
from worker import keys
from worker.engine import guard_list, intake
from worker.guard import Guard, GuardError, derive_key

SUBJECT_KEY = "subject-key-for-guard-tests-0123456789abcdef"


@pytest.fixture
def exported(make_runtime: MakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A guard list exported after erasing user 42 with mary@x.org, and user 7 with rené@x.org (typed
    decomposed and capitalized)."""
    monkeypatch.setenv("ERASURE_SECRET_KEY", "secret-key-for-guard-tests-0123456789abcdef")
    monkeypatch.setenv("ERASURE_SUBJECT_KEY", SUBJECT_KEY)
    rt = make_runtime(stub("crm") + stub("mail", uses=["email"]))
    intake.submit(rt, {"user_id": "42", "email": "Mary@X.org"})
    intake.submit(rt, {"user_id": "7", "email": "Rene\u0301@X.org"})
    drain(rt)
    return guard_list.export(rt, tmp_path / "guard.json").path


@pytest.fixture
def guard(exported: Path) -> Guard:
    """The exported guard list, loaded with the subject key."""
    return Guard.load(exported, key=SUBJECT_KEY)


def test_the_guard_key_is_the_workers(exported: Path) -> None:
    """worker.guard derives from the subject key the very key the worker hashes with, bytes or text."""
    ring = keys.KeyRing(("secret-key-for-guard-tests-0123456789abcdef",), SUBJECT_KEY)
    assert derive_key(SUBJECT_KEY) == derive_key(SUBJECT_KEY.encode()) == ring.guard_key()
    assert json.loads(exported.read_text())["key_id"] == ring.guard_key_id
    assert Guard.load(exported, key=SUBJECT_KEY.encode()).types == {"email": 2, "user_id": 2}
    expected = hmac.new(ring.guard_key(), b"email\0mary@x.org", hashlib.sha256).digest()
    assert Guard.load(exported, key=SUBJECT_KEY).digest("MARY@x.org", type="email") == expected


def test_a_wrong_key_is_refused_in_one_line(exported: Path) -> None:
    """A key that is not the exporting worker's subject key: GuardError naming both key ids, one line."""
    with pytest.raises(GuardError) as caught:
        Guard.load(exported, key="another-subject-key-0123456789abcdef")
    message = str(caught.value)
    assert "\n" not in message and "exported under guard key" in message and str(exported) in message


def test_a_file_that_is_no_guard_list_is_refused(tmp_path: Path) -> None:
    """A JSON file of another shape, or no JSON at all, is refused in one line."""
    for text in ('{"format": 2}', "not json"):
        (tmp_path / "g.json").write_text(text)
        with pytest.raises(GuardError, match="not a guard list"):
            Guard.load(tmp_path / "g.json", key=SUBJECT_KEY)


def test_contains_finds_exactly_the_guarded_integers(guard: Guard) -> None:
    """42 and 7 are guarded: 420, 4, 70 and a null are not, as ints or as text."""
    values = [42, 420, 7, 4, None, 70, 42]
    assert guard.contains(pa.array(values, pa.int64()), type="user_id").to_pylist() == [
        True, False, True, False, False, False, True]
    assert guard.contains(["42", "420", "042", "7"], type="user_id").to_pylist() == [True, False, False, True]
    assert guard.contains(pa.array([42.0, 42.5, None]), type="user_id").to_pylist() == [True, False, False]


def test_text_is_folded_as_its_type_says(guard: Guard) -> None:
    """email folds lower: a stored MARY@X.ORG is caught for the guarded mary@x.org; mary@x.org.uk is not."""
    stored = ["MARY@X.ORG", "mary@x.org", "Mary@x.Org", "mary@x.org.uk", "amary@x.org", None, "MARY@X.ORG "]
    for kind in (pa.string(), pa.large_string(), pa.binary()):
        assert guard.contains(pa.array(stored, kind), type="email").to_pylist() == [
            True, True, True, False, False, False, False]


def test_non_ascii_text_is_folded_by_pythons_rules(guard: Guard) -> None:
    """NFC, then lower by Python's rules: a composed upper-case RENÉ is the guarded rené; RENE is not."""
    stored = ["RENÉ@X.ORG", "rene\u0301@x.org", "RENE@X.ORG", "René@x.org"]
    assert guard.contains(stored, type="email").to_pylist() == [True, True, False, True]


def test_filter_drops_exactly_the_guarded_rows(guard: Guard) -> None:
    """Every other row stays, in order, with its other columns."""
    table = pa.table({"user_id": pa.array([1, 42, 420, 7, 42, 8], pa.int64()), "n": [0, 1, 2, 3, 4, 5]})
    kept = guard.filter(table, column="user_id", type="user_id")
    assert kept.to_pydict() == {"user_id": [1, 420, 8], "n": [0, 2, 5]}


def test_filter_on_dictionary_encoded_and_chunked_columns(guard: Guard) -> None:
    """A dictionary-encoded column (as Parquet reads a string column with read_dictionary) and a
    column in several chunks, each with its own dictionary, lose the same rows as a plain one."""
    emails = ["a@x.org", "MARY@X.ORG", "b@x.org", "mary@x.org", "c@x.org", "Mary@x.org"]
    plain = pa.table({"email": emails})
    expected = ["a@x.org", "b@x.org", "c@x.org"]
    encoded = pa.table({"email": pa.array(emails).dictionary_encode()})
    chunked = pa.table({"email": pa.chunked_array([pa.array(emails[:2]), pa.array(emails[2:5]), pa.array(emails[5:])])})
    chunked_encoded = pa.table({"email": pa.chunked_array(
        [pa.array(emails[:3]).dictionary_encode(), pa.array(emails[3:]).dictionary_encode()])})
    for table in (plain, encoded, chunked, chunked_encoded):
        kept = guard.filter(table, column="email", type="email")
        assert [str(v) for v in kept.column("email").to_pylist()] == expected


def test_an_unknown_type_or_column_is_an_error(guard: Guard) -> None:
    """A type the list does not have, or a column the table lacks, is refused rather than letting all through."""
    with pytest.raises(KeyError, match="phone"):
        guard.contains(["1"], type="phone")
    with pytest.raises(KeyError, match="mail"):
        guard.filter(pa.table({"email": ["a"]}), column="mail", type="email")


def test_filter_takes_a_dataframe(guard: Guard) -> None:
    """A pandas DataFrame comes back as a DataFrame without the guarded rows (an int column with a
    missing value, which pandas holds as floats, too)."""
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"user_id": [1.0, 42.0, None, 7.0], "email": ["a@x", "MARY@X.ORG", "b@x", "c@x"]})
    kept = guard.filter(frame, column="user_id", type="user_id")
    assert isinstance(kept, pandas.DataFrame) and list(kept["email"]) == ["a@x", "b@x"]
    assert list(guard.filter(frame, column="email", type="email")["email"]) == ["a@x", "b@x", "c@x"]


def test_the_api_needs_no_store(exported: Path) -> None:
    """A training job imports worker.guard and filters with none of the worker's store, queue or crypto
    libraries loaded."""
    script = ("import sys, pyarrow as pa\nfrom worker.guard import Guard\n"
              f"g = Guard.load({str(exported)!r}, key={SUBJECT_KEY!r})\n"
              "assert g.contains(pa.array([42, 1]), type='user_id').to_pylist() == [True, False]\n"
              "heavy = {'sqlalchemy', 'celery', 'structlog', 'cryptography', 'worker.keys', 'worker.runtime'}\n"
              "print(sorted(heavy & set(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
