"""All process-wide state in one place: the config, the store's engine, the connectors
(one per system, kept for the life of the process) and the way messages are sent (a Dispatch:
the queue's Celery one in a process, a list in tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from connectors import registry
from connectors.base import Connector, Subject
from worker import keys
from worker.config import Config
from worker.store.engine import create_store_engine, migrate
from worker.store.models import Request, Suppression


class Dispatch(Protocol):
    """Sends the messages that say "go look at row X"."""

    def start(self, request_id: str) -> None:
        """Enqueue resolution and fan-out of one request."""

    def erase(self, request_id: str, system: str, kind: str, countdown: float | None = None,
              also: Sequence[str] = ()) -> None:
        """Enqueue the erasure of one system of one request (and of the requests `also` names)."""

    def tag(self, model: str, version: str) -> None:
        """Enqueue the MLflow tagging of one flagged model version."""

    def part(self, part_id: int, countdown: float | None = None) -> None:
        """Enqueue one part of a snapshot pass spread over workers."""


GROUP_SECONDS = 0.5  # a pass of a kind that erases one subject at a time takes along what it erases in about this


class Pace:
    """How long one subject's erasure takes at each system in this process (a moving average), and so
    how many waiting requests a pass of a kind that erases one subject at a time takes along: many
    where erasing is quick and the store's cost per transaction is what counts, one where erasing
    is slow and requests are better spread over workers that erase side by side."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._each: dict[str, float] = {}

    def group(self, system: str, most: int) -> int:
        """How many requests the next pass at a system may take, its own included (1 until one has been timed)."""
        with self._lock:
            each = self._each.get(system)
        if each is None:
            return 1
        return max(1, min(most, int(GROUP_SECONDS / max(each, 1e-6))))

    def took(self, system: str, seconds: float, subjects: int) -> None:
        """Note a pass: `subjects` erased and verified in `seconds`."""
        each = seconds / subjects
        with self._lock:
            before = self._each.get(system)
            self._each[system] = each if before is None else 0.7 * before + 0.3 * each


class Runtime:
    """What one process holds while it works on requests."""

    def __init__(self, config: Config, dispatch: Dispatch) -> None:
        self.config = config
        self.dispatch = dispatch
        self._engine: Engine | None = None
        self._connectors: dict[str, Connector] = {}
        self._keys: keys.KeyRing | None = None
        self._lock = threading.Lock()  # the worker runs tasks in threads
        self._claims: dict[tuple[str, str], datetime] = {}  # (request, system) -> lease_until, held here
        self._journaled: dict[tuple[str, str], set[str]] = {}  # what each held claim's attempt journaled
        self.pace = Pace()

    @property
    def engine(self) -> Engine:
        """The store's engine, its schema migrated on first use."""
        with self._lock:
            if self._engine is None:
                engine = create_store_engine(self.config.store_url)
                migrate(engine)
                seal_legacy_identifiers(engine, self._keyring)
                self._engine = engine
            return self._engine

    def check(self) -> None:
        """What a long-running process checks before it starts: the store opens and is migrated,
        and the keys are at hand (a store on a server with no key refuses here, in one line)."""
        self.engine  # noqa: B018
        self.keyring  # noqa: B018

    @property
    def keyring(self) -> keys.KeyRing:
        """The keys that seal identifiers and make subject refs (worker.keys says from where)."""
        with self._lock:
            return self._keyring()

    def _keyring(self) -> keys.KeyRing:
        if self._keys is None:
            self._keys = keys.load(self.config.store_url)
        return self._keys

    def seal(self, request_id: str, subject: Subject) -> str:
        """The subject's identifiers sealed for the request's row."""
        return self.keyring.seal(keys.IDENTIFIERS, request_id, subject.identifiers)

    def subject(self, request: Request) -> Subject:
        """The identifiers of a request, opened; SealError if they were dropped or no key opens them."""
        if request.sealed_identifiers is None:
            raise keys.SealError(f"request {request.id} holds no identifiers any more (completed and dropped)")
        return Subject.from_json(self.keyring.open(keys.IDENTIFIERS, request.id, request.sealed_identifiers))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One store transaction: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def connector(self, system: str) -> Connector:
        """The connector of one system, made on first use, given the pseudonym key (read when it needs it)."""
        with self._lock:
            if system not in self._connectors:
                config = self.config.system(system)
                connector = registry.connector_class(config.kind)(config)
                connector.use_pseudonym_key(lambda: self.keyring.pseudonym_key())
                self._connectors[system] = connector
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
                self._journaled.pop((request_id, system), None)

    def note_journaled(self, request_id: str, system: str, key: str) -> None:
        """Note that this process's attempt at a claim journaled `key` (outcomes.journal)."""
        with self._lock:
            self._journaled.setdefault((request_id, system), set()).add(key)

    def journaled(self, request_id: str, system: str) -> frozenset[str]:
        """What this process's attempt at a claim journaled: the rest of its journal is earlier attempts'."""
        with self._lock:
            return frozenset(self._journaled.get((request_id, system), ()))

    def held(self) -> dict[tuple[str, str], datetime]:
        """The claims of passes still running in this process."""
        with self._lock:
            return dict(self._claims)

    def subject_ref(self, identifiers: dict[str, list[str]]) -> str:
        """The keyed hash that stands for a subject in statuses, logs and reports."""
        return self.keyring.subject_ref(identifiers)

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


def seal_legacy_identifiers(engine: Engine, keyring: Callable[[], keys.KeyRing]) -> int:
    """Seal identifiers a store from before sealing holds in the clear, and empty the clear column."""
    with Session(engine) as session, session.begin():
        legacy = session.scalars(select(Request).where(Request.legacy_identifiers.is_not(None))).all()
        ring = keyring() if legacy else None
        for request in legacy:
            assert ring is not None
            request.sealed_identifiers = ring.seal(keys.IDENTIFIERS, request.id, request.legacy_identifiers or {})
            request.legacy_identifiers = None
    return len(legacy)


def rotate_keys(rt: Runtime) -> dict[str, int]:
    """Seal again, under the newest secret, every sealed value sealed under an older one, so the
    older secrets can then be dropped. Idempotent; one transaction per table."""
    ring, counts = rt.keyring, {"requests": 0, "suppressions": 0}
    with rt.transaction() as session:
        for request in session.scalars(select(Request).where(Request.sealed_identifiers.is_not(None))):
            token = request.sealed_identifiers or ""
            if ring.needs_rotation(token, keys.IDENTIFIERS):
                opened = ring.open(keys.IDENTIFIERS, request.id, token)
                request.sealed_identifiers = ring.seal(keys.IDENTIFIERS, request.id, opened)
                counts["requests"] += 1
    with rt.transaction() as session:
        for entry in session.scalars(select(Suppression)):
            if ring.needs_rotation(entry.sealed, keys.SUPPRESSION):
                entry.sealed = ring.seal(keys.SUPPRESSION, entry.request_id,
                                         ring.open(keys.SUPPRESSION, entry.request_id, entry.sealed))
                counts["suppressions"] += 1
    return counts
