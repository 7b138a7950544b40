"""Real `erasure` processes and the poison sent to them (fault fixtures in tests/faults/conftest.py)."""


from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Queue

from tests.helpers.config import USER_IDS_ONLY, system_table, write_config
from tests.helpers.runtime import json_events

SETTLED = ("completed", "failed")


@dataclass(frozen=True)
class Backend:
    """Where a test's store and broker are."""

    name: str
    store_url: str
    broker_url: str


def fault_config(folder: Path, backend: Backend, systems: str, worker: Mapping[str, Any] | None = None) -> Path:
    """The fault tests' erasure.toml: the backend's store and broker, user ids only, retries 0.2 s apart."""
    return write_config(folder, systems, store_url=backend.store_url, broker_url=backend.broker_url,
                        identifiers=USER_IDS_ONLY, worker={"retry_backoff_seconds": 0.2, **(worker or {})})


def app_and_training(app_db: str, location: Path, tables: tuple[tuple[str, str], ...]) -> str:
    """The TOML of the fault tests' two systems: `app-db` (sql, deleting from each table by its
    column = user_id, in the order given) and `training` (a Parquet snapshot folder)."""
    return (system_table("app-db", "sql", url=app_db, tables=[
                {"name": table, "where": {column: "user_id"}, "action": "delete"} for table, column in tables])
            + system_table("training", "snapshot", location=str(location), format="parquet",
                           where={"user_id": "user_id"}))


def erasure(config: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command against one config, in this environment with `env`'s variables over it."""
    return subprocess.run([sys.executable, "-m", "worker", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


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
        return [e for e in json_events(self.log.read_text()) if name is None or e.get("event") == name]

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


# poison on erasure.intake, published raw as any client could
CANARY = "canary-5551"  # in every poison body: never to be seen in the log


def task_message(name: str, body: Any, **headers: Any) -> tuple[bytes, str, dict[str, Any]]:
    """A protocol-2 task message: JSON body, the task's name in the headers."""
    return json.dumps(body).encode(), "application/json", {"task": name, "id": str(uuid.uuid4()), **headers}


# (body, content type, headers) -> the reason logged and kept with the dead letter
POISON = [
    ((b'{"subject": ' + CANARY.encode(), "application/json", {"task": "erasure.submit", "id": "1"}),
     "the body is not JSON"),
    ((CANARY.encode(), "text/plain", {}), "content type text/plain is not accepted (JSON only)"),
    ((b"\x80\x04\x95" + CANARY.encode(), "application/x-python-serialize", {"task": "erasure.submit", "id": "2"}),
     "content type application/x-python-serialize is not accepted (JSON only)"),
    (task_message("os.system", [[CANARY], {}, {}]), "unknown task os.system"),
    (task_message("erasure.submit", {"subject": {"user_id": CANARY}}), "the body is not [args, kwargs, options]"),
    (task_message("erasure.start", [[{"id": CANARY}], {}, {}]),
     "erasure.start: request_id must be a string of 1 to 300 characters"),
    (task_message("erasure.erase_system", [[CANARY, "vault", "extra"], {}, {}]),
     "erasure.erase_system: the arguments do not fit (request_id, system, also)"),
    (task_message("erasure.erase_system", [["r", "vault"], {"also": ["r2", {"id": CANARY}]}, {}]),
     "erasure.erase_system: also must be a list of at most 1000 strings of 1 to 300 characters"),
    (task_message("erasure.erase_system", [["r", "vault"], {"also": "r2"}, {}]),
     "erasure.erase_system: also must be a list of at most 1000 strings of 1 to 300 characters"),
    (task_message("erasure.submit", [[], {"subject": {"user_id": "7"}},
                                     {"callbacks": [{"task": "os.system", "args": [CANARY]}]}]),
     "erasure.submit: callbacks and chains are not accepted"),
    ((json.dumps({"hello": CANARY}).encode(), "application/json", {}), "not a Celery task message (no task name)"),
]


def erasure_queue(name: str, quorum: bool = False) -> Queue:
    """One of the worker's queues, declared as the worker declares it (classic, or quorum on a topic exchange)."""
    exchange = Exchange("erasure", type="topic" if quorum else "direct", durable=True)
    return Queue(name, exchange, routing_key=name, durable=True,
                 queue_arguments={"x-queue-type": "quorum"} if quorum else None)


def publish(broker_url: str, messages: list[tuple[bytes, str, dict[str, Any]]], quorum: bool = False) -> None:
    """Publish raw messages to erasure.intake."""
    intake_queue = erasure_queue("erasure.intake", quorum)
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        for body, content_type, headers in messages:
            producer.publish(body, exchange=intake_queue.exchange, routing_key=intake_queue.routing_key,
                             declare=[intake_queue], content_type=content_type, content_encoding="utf-8",
                             headers=headers)


def dead_letters(broker_url: str, quorum: bool = False) -> list[tuple[bytes, dict[str, Any]]]:
    """Everything in erasure.dead, taken off it: (body, headers)."""
    found = []
    with Connection(broker_url) as conn:
        dead = erasure_queue("erasure.dead", quorum)(conn.default_channel)
        dead.declare()
        while (message := dead.get(no_ack=True)) is not None:
            body = message.body if isinstance(message.body, bytes) else message.body.encode()
            found.append((body, message.headers))
    return found
