"""All process-wide state in one place: the config, the store's engine, the connectors
(one per system, kept for the life of the process) and the way messages are sent."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from connectors import REGISTRY
from connectors.base import Connector
from worker import celery_app, keys
from worker.config import Config
from worker.store.engine import create_store_engine, migrate


class Dispatch(Protocol):
    """Sends the messages that say "go look at row X"."""

    def start(self, request_id: str) -> None:
        """Enqueue resolution and fan-out of one request."""

    def erase(self, request_id: str, system: str, kind: str, countdown: float | None = None) -> None:
        """Enqueue the erasure of one system of one request."""

    def tag(self, model: str, version: str) -> None:
        """Enqueue the MLflow tagging of one flagged model version."""


class CeleryDispatch:
    """Dispatch through the Celery broker, routed by connector kind."""

    def start(self, request_id: str) -> None:
        """Send erasure.start to the intake queue."""
        celery_app.app.send_task("erasure.start", args=[request_id], queue=celery_app.INTAKE_QUEUE)

    def erase(self, request_id: str, system: str, kind: str, countdown: float | None = None) -> None:
        """Send erasure.erase_system to the queue of the system's kind."""
        celery_app.app.send_task("erasure.erase_system", args=[request_id, system],
                                 queue=celery_app.queue_for(kind), countdown=countdown)

    def tag(self, model: str, version: str) -> None:
        """Send erasure.tag_mlflow to its own queue."""
        celery_app.app.send_task("erasure.tag_mlflow", args=[model, version], queue=celery_app.MLFLOW_QUEUE)


class Runtime:
    """What one process holds while it works on requests."""

    def __init__(self, config: Config, dispatch: Dispatch | None = None) -> None:
        self.config = config
        self.dispatch: Dispatch = dispatch or CeleryDispatch()
        self._engine: Engine | None = None
        self._connectors: dict[str, Connector] = {}
        self._subject_key: bytes | None = None
        self._lock = threading.Lock()  # the worker runs tasks in threads
        self._claims: dict[tuple[str, str], datetime] = {}  # (request, system) -> lease_until, held here
        if dispatch is None:
            celery_app.configure(config)

    @property
    def engine(self) -> Engine:
        """The store's engine, its schema migrated on first use."""
        with self._lock:
            if self._engine is None:
                engine = create_store_engine(self.config.store_url)
                migrate(engine)
                self._engine = engine
            return self._engine

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One store transaction: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def connector(self, system: str) -> Connector:
        """The connector of one system, made on first use."""
        with self._lock:
            if system not in self._connectors:
                config = self.config.system(system)
                self._connectors[system] = REGISTRY[config.kind](config)
            return self._connectors[system]

    def hold(self, request_id: str, system: str, lease_until: datetime) -> None:
        """Note a claim this process took, so that a shutdown can hand it back."""
        with self._lock:
            self._claims[(request_id, system)] = lease_until

    def let_go(self, system: str, request_ids: Iterable[str]) -> None:
        """Forget claims whose pass has ended, however it ended."""
        with self._lock:
            for request_id in request_ids:
                self._claims.pop((request_id, system), None)

    def held(self) -> dict[tuple[str, str], datetime]:
        """The claims of passes still running in this process."""
        with self._lock:
            return dict(self._claims)

    def subject_ref(self, identifiers: dict[str, list[str]]) -> str:
        """The keyed hash that stands for a subject in statuses, logs and reports."""
        if self._subject_key is None:
            self._subject_key = keys.subject_key(self.config.path)
        return keys.subject_ref(self._subject_key, identifiers)

    def after_fork(self) -> None:
        """Drop connections inherited from a parent process."""
        if self._engine is not None:
            self._engine.dispose(close=False)
        self._connectors = {}

    def close(self) -> None:
        """Close every connector and the store's pool."""
        for connector in self._connectors.values():
            connector.close()
        self._connectors = {}
        if self._engine is not None:
            self._engine.dispose()


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    """Make this the process's runtime (the worker's tasks use it)."""
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The process's runtime; a worker started by Celery directly loads the default config."""
    global _current
    if _current is None:
        from worker.config import config_path, load

        _current = Runtime(load(config_path()))
    return _current
