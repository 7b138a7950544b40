"""Connector kinds are plugins: a distribution of its own (tests/plugins/erasure-echo), installed
into the test environment, adds a kind that a config names and a request erases with, with no
change to erasure-worker; a kind two distributions claim is refused, naming both; and a worker
whose config names only sql systems never imports what the other kinds need."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors import registry
from tests.helpers import USER_IDS_ONLY, ListDispatch, drain, system_table, write_config
from worker.config import load
from worker.engine import intake
from worker.errors import ConfigError
from worker.runtime import Runtime
from worker.store.models import AuditEvent
from worker.surfaces import views

PLUGINS = Path(__file__).parent.parent / "plugins"


def install(name: str, into: Path) -> Path:
    """pip-install a test plugin (from a copy of its source, so the tree stays clean) into a folder."""
    source = into / "src" / name
    shutil.copytree(PLUGINS / name, source)
    target = into / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """erasure-echo 0.3.1, installed once for this module."""
    return install("erasure-echo", tmp_path_factory.mktemp("echo"))


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    """Each test discovers the kinds afresh, and leaves them as the installed distributions declare."""
    registry.reload()
    yield
    registry.reload()


def echo_config(folder: Path, lines: Path) -> Path:
    """An erasure.toml with one echo system over the file of lines."""
    return write_config(folder, system_table("notes", "echo", file=str(lines), holds="user_id"),
                        identifiers=USER_IDS_ONLY)


def test_a_kind_from_another_distribution_erases(echo_site: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed, erasure-echo's kind is found, its config read, a request erased with it (only the
    subject's lines, never 420 for 42), and the audit event names its distribution and version."""
    monkeypatch.syspath_prepend(str(echo_site))
    registry.reload()
    assert registry.kinds()["echo"].origin() == {"distribution": "erasure-echo", "version": "0.3.1"}
    lines = tmp_path / "notes.txt"
    lines.write_text("42\n420\n7\n42\n")
    rt = Runtime(load(echo_config(tmp_path, lines)), ListDispatch())
    try:
        request_id = intake.submit(rt, {"user_id": "42"}).request_id
        drain(rt)
        status = views.status(rt, request_id)
        with rt.transaction() as session:
            event = session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id,
                                                             AuditEvent.type == "system.erased")).one()
            origin = event.data["connector"]
    finally:
        rt.close()
    assert (status["status"], status["systems"][0]["items_erased"]) == ("completed", 2)
    assert lines.read_text() == "420\n7\n"
    assert origin == {"distribution": "erasure-echo", "version": "0.3.1"}


def test_a_kind_not_installed_is_a_config_error(tmp_path: Path) -> None:
    """Without the plugin, a config naming `echo` is refused at start-up, listing the kinds there are."""
    known = "http, manual, redis, s3, snapshot, sql, stub, vector"
    with pytest.raises(ConfigError, match=rf"kind: unknown kind 'echo' \(known: {known}\)"):
        load(echo_config(tmp_path, tmp_path / "notes.txt"))


def test_a_kind_claimed_by_two_distributions_is_refused(echo_site: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With erasure-echo and erasure-echo-twin both declaring `echo`, loading a config fails in one
    line naming both distributions, rather than guessing which one erases."""
    twin = install("erasure-echo-twin", tmp_path)
    monkeypatch.syspath_prepend(str(echo_site))
    monkeypatch.syspath_prepend(str(twin))
    registry.reload()
    with pytest.raises(ConfigError) as caught:
        load(echo_config(tmp_path, tmp_path / "notes.txt"))
    message = str(caught.value)
    assert "\n" not in message
    assert "'echo'" in message and "erasure-echo (" in message and "erasure-echo-twin (" in message


SQL_ONLY = """
import json, sys
from pathlib import Path
from worker.config import load
from worker.queue.dispatch import celery_runtime
from worker.queue import tasks  # everything a worker process loads
from connectors.base import Subject
rt = celery_runtime(load(Path(sys.argv[1])))
with rt.connector("app-db") as app:
    app.erase(Subject({"user_id": ("42",)}))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"boto3", "botocore", "pyarrow", "deltalake", "s3transfer"})
print(json.dumps(heavy))
"""


def test_a_sql_only_worker_never_imports_the_other_kinds_libraries(tmp_path: Path) -> None:
    """A worker process whose config names only a sql system erases without importing boto3 or pyarrow."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "app.db")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO users VALUES (42), (420)")
    db.commit()
    db.close()
    config = write_config(tmp_path, system_table("app-db", "sql", url=f"sqlite:///{tmp_path}/app.db", tables=[
        {"name": "users", "where": {"id": "user_id"}, "action": "delete"}]), identifiers=USER_IDS_ONLY)
    done = subprocess.run([sys.executable, "-c", SQL_ONLY, str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    db = sqlite3.connect(tmp_path / "app.db")
    assert db.execute("SELECT id FROM users").fetchall() == [(420,)]
