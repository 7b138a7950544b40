"""Identifiers kept secret: sealed with AES-GCM under keys from the environment, a key file, or the
key file the embedded default makes beside its SQLite store; rotation; subject refs under their
own key; identifiers dropped once a request is completed; the redaction safety net."""

from __future__ import annotations

import json
import logging
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog

from connectors import redact
from tests.helpers import MakeRuntime, drain, resolver, stored, stub, system_table, write_config
from worker import keys, logs
from worker.config import load
from worker.engine import intake, reconcile
from worker.errors import ConfigError, one_line
from worker.queue.dispatch import celery_runtime
from worker.runtime import rotate_keys
from worker.store.models import Request, Suppression
from worker.surfaces.cli import main

OLD, NEW = "old-secret-" + "o" * 32, "new-secret-" + "n" * 32
SUBJECT = "subject-secret-" + "s" * 32
EMAIL = "zelda.unique-7731@example.com"


@pytest.fixture(autouse=True)
def no_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says where its keys come from."""
    for name in ("ERASURE_SECRET_KEY", "ERASURE_SUBJECT_KEY", "ERASURE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


# --- where the keys come from -----------------------------------------------------------------


def test_the_embedded_store_makes_a_0600_key_file_beside_itself_once(
        make_runtime: MakeRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """First use makes `<store>.key`, readable by its owner only, and says where; a second process
    reads the same keys, so a subject keeps its ref."""
    logs.configure(fmt="json")
    rt = make_runtime(stub("crm"))
    first = intake.submit(rt, {"user_id": "42"})
    key_file = tmp_path / "state.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    created = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "keys.created" in line]
    assert [c["path"] for c in created] == [str(key_file)]
    text = key_file.read_text()

    again = make_runtime(stub("crm"))
    assert again.subject_ref({"user_id": ["42"]}) == stored(rt, first.request_id).subject_ref
    assert key_file.read_text() == text
    assert "keys.created" not in capsys.readouterr().err


def test_a_store_on_a_server_without_a_key_refuses_in_one_line(tmp_path: Path) -> None:
    """PostgreSQL with neither $ERASURE_SECRET_KEY nor a key file: one line saying how to make one."""
    with pytest.raises(ConfigError) as refused:
        keys.load("postgresql+psycopg://app:hunter2@db.internal/erasure")
    message = str(refused.value)
    assert "\n" not in message and "erasure keys new" in message and "ERASURE_SECRET_KEY" in message
    assert "hunter2" not in message


def test_the_worker_on_postgresql_without_a_key_exits_2(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`erasure worker` refuses to start: exit 2, one line on stderr."""
    monkeypatch.delenv("ERASURE_SECRET_KEY")
    config = write_config(tmp_path, stub("crm"), store_url=postgres_url)
    assert main(["worker", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs a secret key" in err and "erasure keys new" in err


def test_keys_from_the_environment_and_a_short_one_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """$ERASURE_SECRET_KEY lists secrets newest first; one under 32 characters is refused."""
    monkeypatch.setenv("ERASURE_SECRET_KEY", f"{NEW}, {OLD}")
    ring = keys.load("postgresql+psycopg://db/erasure")
    assert ring.secrets == (NEW, OLD)
    monkeypatch.setenv("ERASURE_SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="shorter than 32"):
        keys.load("postgresql+psycopg://db/erasure")


def test_a_named_key_file_is_read_and_a_bad_one_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$ERASURE_KEY_FILE points at a key file as `erasure keys new --file` prints it."""
    path = tmp_path / "keys.toml"
    path.write_text(keys.key_file_text([NEW, OLD], SUBJECT))
    path.chmod(0o600)
    monkeypatch.setenv("ERASURE_KEY_FILE", str(path))
    assert keys.load("postgresql+psycopg://db/erasure") == keys.KeyRing((NEW, OLD), SUBJECT, source=str(path))
    path.write_text('secrets = "not a list"\n')
    with pytest.raises(ConfigError, match="keys.toml: a key file holds"):
        keys.load("postgresql+psycopg://db/erasure")


def test_keys_new_prints_a_secret_and_a_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`erasure keys new` prints a 256-bit secret; `--file` a whole key file that loads."""
    assert main(["keys", "new"]) == 0
    secret = capsys.readouterr().out.strip()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert main(["keys", "new", "--file"]) == 0
    path = tmp_path / "made.key"
    path.write_text(capsys.readouterr().out)
    ring = keys.read_key_file(path)
    assert len(ring.secrets) == 1 and ring.secrets[0] != ring.subject_secret


# --- sealing ------------------------------------------------------------------------------------


def test_sealed_identifiers_open_only_with_the_right_key_and_row() -> None:
    """The clear value is nowhere in the sealed text; another key, another row, or one flipped
    character, and it does not open (the error names no value)."""
    ring = keys.KeyRing((NEW,), SUBJECT)
    sealed = ring.seal(keys.IDENTIFIERS, "request-1", {"email": [EMAIL]})
    assert EMAIL not in sealed and "zelda" not in sealed
    assert ring.open(keys.IDENTIFIERS, "request-1", sealed) == {"email": [EMAIL]}

    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    for attempt in (
        lambda: keys.KeyRing((OLD,), SUBJECT).open(keys.IDENTIFIERS, "request-1", sealed),  # wrong key
        lambda: ring.open(keys.IDENTIFIERS, "request-2", sealed),  # copied onto another row
        lambda: ring.open(keys.SUPPRESSION, "request-1", sealed),  # read for another purpose
        lambda: ring.open(keys.IDENTIFIERS, "request-1", flipped),
    ):
        with pytest.raises(keys.SealError) as refused:
            attempt()
        assert EMAIL not in str(refused.value)


def test_a_rotated_key_still_reads_old_ones_and_rotate_reseals_them(
        make_runtime: MakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Sealed under OLD; with NEW put first, OLD's values still open and new ones are sealed under
    NEW; `erasure keys rotate` seals the old ones again, after which OLD can be dropped."""
    monkeypatch.setenv("ERASURE_SECRET_KEY", OLD)
    monkeypatch.setenv("ERASURE_SUBJECT_KEY", SUBJECT)
    rt = make_runtime(stub("crm"))
    before = intake.submit(rt, {"email": EMAIL, "user_id": "42"}).request_id
    ref = stored(rt, before).subject_ref

    monkeypatch.setenv("ERASURE_SECRET_KEY", f"{NEW},{OLD}")
    both = make_runtime(stub("crm"))
    assert both.subject(stored(both, before)).to_json() == {"email": [EMAIL], "user_id": ["42"]}
    after = intake.submit(both, {"user_id": "7"}).request_id
    assert not both.keyring.needs_rotation(stored(both, after).sealed_identifiers or "", keys.IDENTIFIERS)
    assert both.keyring.needs_rotation(stored(both, before).sealed_identifiers or "", keys.IDENTIFIERS)
    assert both.subject_ref({"email": [EMAIL], "user_id": ["42"]}) == ref  # the subject key did not move

    config = tmp_path / "erasure.toml"
    assert main(["keys", "rotate", "--config", str(config)]) == 0
    assert "1 request(s)" in capsys.readouterr().out
    assert rotate_keys(both) == {"requests": 0, "suppressions": 0}  # idempotent

    monkeypatch.setenv("ERASURE_SECRET_KEY", NEW)
    only_new = make_runtime(stub("crm"))
    assert only_new.subject(stored(only_new, before)).to_json() == {"email": [EMAIL], "user_id": ["42"]}


def test_a_dropped_key_before_rotation_is_named(make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping OLD too early: the error says which key is missing and what to run."""
    monkeypatch.setenv("ERASURE_SECRET_KEY", OLD)
    rt = make_runtime(stub("crm"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    monkeypatch.setenv("ERASURE_SECRET_KEY", NEW)
    rt2 = make_runtime(stub("crm"))
    with pytest.raises(keys.SealError, match="not among the keys given.*erasure keys rotate"):
        rt2.subject(stored(rt2, request_id))


def test_the_subject_ref_has_a_key_of_its_own() -> None:
    """Same secrets, another subject key: another ref; the ref is no plain hash of the value."""
    a, b = keys.KeyRing((NEW,), SUBJECT), keys.KeyRing((NEW,), SUBJECT.replace("s", "t"))
    ids = {"email": [EMAIL]}
    assert a.subject_ref(ids) == keys.KeyRing((OLD,), SUBJECT).subject_ref(ids)
    assert a.subject_ref(ids) != b.subject_ref(ids)
    assert len(a.subject_ref(ids)) == 20


def test_identifiers_in_the_clear_from_before_are_sealed_when_the_store_opens(
        make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A store written before sealing (0005) holds identifiers in the clear: the first process with
    keys seals them and empties the clear column."""
    rt = make_runtime(stub("crm"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    with rt.engine.begin() as conn:
        conn.execute(sa.text("UPDATE requests SET identifiers = :clear, sealed_identifiers = NULL"),
                     {"clear": json.dumps({"user_id": ["42"]})})
    rt.close()
    reopened = make_runtime(stub("crm"))
    request = stored(reopened, request_id)
    assert request.legacy_identifiers is None and request.sealed_identifiers is not None
    assert reopened.subject(request).to_json() == {"user_id": ["42"]}


# --- dropped once completed ---------------------------------------------------------------------


def test_a_completed_request_keeps_only_its_sealed_suppression_entry(make_runtime: MakeRuntime) -> None:
    """Completed: the request forgets its identifiers; the suppression entry holds them sealed under
    the suppression key, with the systems they were erased from."""
    rt = make_runtime(stub("crm") + stub("billing", fail_permanently=True) + stub("mail"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    main_config = str(rt.config.path)
    drain(rt)
    assert stored(rt, request_id).status == "failed"
    assert stored(rt, request_id).sealed_identifiers is not None  # kept: a retry needs them
    assert main(["exempt", request_id, "--system", "billing", "--reason", "tax law", "--config", main_config]) == 0
    request = stored(rt, request_id)
    assert request.status == "completed" and request.sealed_identifiers is None
    with rt.transaction() as session:
        entry = session.get(Suppression, request_id)
        assert entry is not None
        assert entry.systems == ["crm", "mail"]  # not billing: it is exempt
        assert rt.keyring.open(keys.SUPPRESSION, request_id, entry.sealed) == {"user_id": ["42"]}
        events = session.execute(sa.text("SELECT type FROM audit_events WHERE request_id = :r"),
                                 {"r": request_id}).scalars().all()
    assert "request.identifiers_dropped" in events


def test_an_exemption_with_an_end_keeps_the_identifiers_until_its_recheck(make_runtime: MakeRuntime) -> None:
    """A retention until a date needs the identifiers for the erasure after it: they are dropped
    only once that recheck has erased, and the suppression entry then covers the system too."""
    rt = make_runtime(stub("crm") + stub("vault", retain={"reason": "tax law", "until": "2999-01-01"}))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    request = stored(rt, request_id)
    assert request.status == "completed" and request.sealed_identifiers is not None
    with rt.transaction() as session:
        entry = session.get(Suppression, request_id)
        assert entry is not None and entry.systems == ["crm"]
        vault = next(t for t in session.get_one(Request, request_id).systems if t.system == "vault")
        vault.recheck_at = datetime.now(UTC) - timedelta(days=1)  # the retention has ended
    later = make_runtime(stub("crm") + stub("vault"))
    assert reconcile.reconcile(later)["rechecked"] == 1
    drain(later)
    request = stored(later, request_id)
    assert request.status == "completed" and request.sealed_identifiers is None
    with later.transaction() as session:
        assert session.get_one(Suppression, request_id).systems == ["crm", "vault"]


# --- the redaction safety net ---------------------------------------------------------------


def test_known_values_are_redacted_from_log_lines_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """A value that slips into a log field, a message, a nested list or an error is masked; a
    value inside a longer token (42 in 420, in a request id) is left alone."""
    logs.configure(fmt="json")
    log = structlog.get_logger("test")
    with redact.values([EMAIL, "42"]):
        log.warning("oops", error=f"no row for {EMAIL.upper()}", ids=["42", "420"], request_id="ab42-cd-42x")
        logging.getLogger("driver").error("parameters: ('42',)")
        assert one_line(ValueError(f"bad {EMAIL}\nnext line")) == "bad [redacted] next line"
    log.warning("after", value="42")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["error"] == "no row for [redacted]"
    assert lines[0]["ids"] == ["[redacted]", "420"] and lines[0]["request_id"] == "ab42-cd-42x"
    assert lines[1]["event"] == "parameters: ('[redacted]',)"
    assert lines[2]["value"] == "42"  # outside the block nothing is known


def test_the_raw_value_is_nowhere_after_a_completed_request(tmp_path: Path) -> None:
    """A real worker process on the embedded default erases a subject found by e-mail in a SQLite
    application database; afterwards neither the store's files, the broker's, the worker's log nor
    any JSON output holds the e-mail or the user id it resolved to."""
    import os
    import signal
    import subprocess
    import time

    user_id = "918273645546372819"
    app = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{app}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql(f"INSERT INTO users VALUES ({user_id}, '{EMAIL}'), (2, 'other@example.com')")
    engine.dispose()
    systems = (resolver("app", "email", "user_id", "SELECT id FROM users WHERE email = :email")
               + system_table("app", "sql", url=f"sqlite:///{app}",
                              tables=[{"name": "users", "where": {"id": "user_id"}, "action": "delete"}]))
    config = write_config(tmp_path, systems)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERASURE_")} | {"ERASURE_LOG_FORMAT": "json"}

    outputs: list[str] = []

    def erasure(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "worker", *args, "--config", str(config)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
        return done.stdout

    request_id = json.loads(erasure("submit", "--subject", f"email={EMAIL.upper()}", "--json"))["request_id"]
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "worker", "worker", "--config", str(config)],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while json.loads(erasure("status", request_id, "--json"))["status"] != "completed":
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()[-2000:]
            time.sleep(0.3)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    for args in (("status", request_id, "--json"), ("list", "--json"), ("report", request_id),
                 ("report", request_id, "--format", "md"), ("stats", "--json"), ("models", "--json"),
                 ("audit", "verify")):
        erasure(*args)

    with sa.create_engine(f"sqlite:///{app}").connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM users").scalars().all() == [2]  # erased, the other kept
    files = [p for p in tmp_path.iterdir() if p.name.startswith(("state.db", "queue.db"))]
    assert any(p.name == "state.db" for p in files)
    for raw in (EMAIL, user_id):
        for path in [*files, log]:
            assert raw.encode() not in path.read_bytes(), path.name
        for text in outputs:
            assert raw not in text
    assert "zelda" not in log.read_text().lower()


def test_a_corrupt_key_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    """A key file that is not TOML names itself."""
    (tmp_path / "state.db.key").write_text("not = [toml")
    config = write_config(tmp_path, stub("crm"))
    rt = celery_runtime(load(config))
    with pytest.raises(ConfigError, match=r"state\.db\.key: cannot read the key file"):
        rt.keyring  # noqa: B018
    rt.close()
