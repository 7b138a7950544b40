"""Fault tests: real `erasure worker` processes against real RabbitMQ and PostgreSQL and against
the embedded default (SQLite store, SQLite broker), with the faults made for real: SIGKILL,
SIGTERM, a broker and a store restarted, a target that refuses connections, poison on the queue.
Each test has its own RabbitMQ vhost and its own PostgreSQL databases, made and dropped here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_ADMIN_URL, TEST_SECRET_KEY, own_vhost, scratch_database

IDENTIFIERS = "[identifiers]\nuser_id = { pattern = '^[0-9]{1,18}$' }\n"
SETTLED = ("completed", "failed")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so `pytest -m "not faults"` runs the rest quickly."""
    config.addinivalue_line("markers", "faults: real processes, real faults (tests/faults); -m 'not faults' skips them")


@dataclass(frozen=True)
class Backend:
    """Where a test's store and broker are."""

    name: str
    store_url: str
    broker_url: str


@pytest.fixture
def rabbitmq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """The production parts: a PostgreSQL store (with the key it needs) and a RabbitMQ vhost."""
    monkeypatch.setenv("ERASURE_SECRET_KEY", os.environ.get("ERASURE_SECRET_KEY") or TEST_SECRET_KEY)
    with scratch_database(PG_ADMIN_URL, 5432, "PostgreSQL") as store, own_vhost("erasure-faults") as broker:
        yield Backend("rabbitmq", store, broker)


@pytest.fixture
def embedded(tmp_path: Path) -> Backend:
    """The embedded default: a SQLite store and kombu's SQLite broker, in files."""
    return Backend("embedded", f"sqlite:///{tmp_path}/state.db", f"sqla+sqlite:///{tmp_path}/queue.db")


@pytest.fixture(params=["embedded", "rabbitmq"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each of the two."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture
def app_db() -> Iterator[str]:
    """A PostgreSQL database playing an application's: users and their orders."""
    with scratch_database(PG_ADMIN_URL, 5432, "PostgreSQL") as url:
        yield url


def app_and_training(app_db: str, location: Path, tables: tuple[tuple[str, str], ...]) -> str:
    """The TOML of the fault tests' two systems: `app-db` (sql, deleting from each table by its
    column = user_id, in the order given) and `training` (a Parquet snapshot folder)."""
    sql = "".join(f'  [[systems.tables]]\n  name = "{table}"\n  where = {{ {column} = "user_id" }}\n'
                  '  action = "delete"\n' for table, column in tables)
    return (f'[[systems]]\nname = "app-db"\nkind = "sql"\nurl = "{app_db}"\n{sql}'
            f'[[systems]]\nname = "training"\nkind = "snapshot"\nlocation = "{location}"\n'
            'format = "parquet"\nwhere = { user_id = "user_id" }\n')


def write_config(folder: Path, backend: Backend, systems: str, worker: str = "") -> Path:
    """An erasure.toml for the backend with the given systems and [worker] lines."""
    path = folder / "erasure.toml"
    path.write_text(f'store_url = "{backend.store_url}"\nbroker_url = "{backend.broker_url}"\n'
                    f"[worker]\nmax_attempts = 3\nretry_backoff_seconds = 0.2\n{worker}\n{IDENTIFIERS}\n{systems}")
    return path


def erasure(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command against one config."""
    return subprocess.run([sys.executable, "-m", "worker", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120)


def submit(config: Path, user_id: int) -> str:
    """Submit one request; its id."""
    done = erasure(config, "submit", "--subject", f"user_id={user_id}", "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["request_id"])


def status(config: Path, request_id: str) -> dict[str, Any]:
    """`erasure status --json`, with the systems by name."""
    done = erasure(config, "status", request_id, "--json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    found["by_system"] = {s["system"]: s for s in found["systems"]}
    return found


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90, every: float = 0.3,
             alive: WorkerProcess | None = None) -> Any:
    """Poll until check() gives something true, and give it; fail naming what was awaited."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        found = check()
        if found:
            return found
        if alive is not None:
            assert alive.proc.poll() is None, f"the worker exited while waiting for {what}:\n{alive.tail()}"
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{alive.tail()}" if alive else ""))


def all_settled(config: Path, request_ids: list[str]) -> Callable[[], list[dict[str, Any]] | None]:
    """A check: every request completed or failed (their statuses), else None."""
    def check() -> list[dict[str, Any]] | None:
        found = [status(config, r) for r in request_ids]
        return found if all(s["status"] in SETTLED for s in found) else None
    return check


class WorkerProcess:
    """One `erasure worker` process in its own session, its JSON log in a file."""

    def __init__(self, config: Path, log: Path, *options: str) -> None:
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "worker", "--config", str(config), *options],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "ERASURE_LOG_FORMAT": "json"},
            )

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The log's events (of one name, if given)."""
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    found.append(event)
        return found

    def tail(self) -> str:
        """The end of the log, for a failure's message."""
        return self.log.read_text()[-4000:]

    def ready(self) -> None:
        """Wait until Celery says the worker is consuming."""
        wait_for("the worker to be ready", lambda: any(e["event"].endswith(" ready.") for e in self.events()),
                 timeout=60, alive=self)

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the worker's whole process group."""
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        """Its exit code."""
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes (the nth logs to worker-n.log); all killed afterwards."""
    started: list[WorkerProcess] = []

    def start(config: Path, *options: str, ready: bool = True) -> WorkerProcess:
        worker = WorkerProcess(config, tmp_path / f"worker-{len(started) + 1}.log", *options)
        started.append(worker)
        if ready:
            worker.ready()
        return worker

    yield start
    for worker in started:
        worker.kill()


class Forwarder:
    """A TCP port that forwards to another, opened only when told: the way to a target that is
    unreachable (connection refused) until it comes back."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.sockets: list[socket.socket] = []

    def open(self) -> None:
        """Listen and forward from now on."""
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        """Stop listening and cut every forwarded connection."""
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
