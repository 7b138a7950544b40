"""What every connector is: a tiny interface, the subject it erases, the outcome it reports, what a
read-only look finds. A plugin imports all it needs from here, the config reader included
(connectors/reading.py holds it, connectors/subject.py the subject)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Self, TypeVar

import tenacity

from connectors.errors import ConnectorError, TransientError
from connectors.reading import (
    ENV_NAME,
    ConfigReader,
    EnvSecret,
    Retention,
    SystemConfig,
    Template,
)
from connectors.subject import INTEGER, Subject, as_integer

__all__ = ["CANNOT_EXPORT", "CANNOT_LOOK", "ENV_NAME", "INTEGER", "Checked", "ConfigReader", "Connector",
           "EnvSecret", "Journal", "Outcome", "Part", "Patterns", "Preview", "Retention", "SnapshotHit", "Subject",
           "SystemConfig", "Template", "as_integer", "by_an_earlier_attempt", "every_one", "one_at_a_time",
           "retry_blips"]

T = TypeVar("T")


@dataclass(frozen=True)
class SnapshotHit:
    """A snapshot that held the subject's rows, and what was removed from it."""

    snapshot: str  # "SYSTEM:FOLDER"
    rows: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What one erase() did: items removed, evidence without identifier values, hits.

    A connector that erased all it could but must leave some items by law or by the
    store's own lock (an S3 Object Lock, a legal hold) sets `exempt_reason`, and
    `recheck_at` when erasing them should be tried again (the lock's end)."""

    items_erased: int
    evidence: dict[str, Any] = field(default_factory=dict)
    snapshots: tuple[SnapshotHit, ...] = ()
    exempt_reason: str | None = None
    recheck_at: datetime | None = None


Patterns = Mapping[str, re.Pattern[str]]  # each identifier type's pattern, by its name


@dataclass(frozen=True)
class Checked:
    """What a read-only look at one system found: problems (each one would fail an erasure there) and
    notes (what could not be checked without acting, or what deserves a look). Never an identifier's value."""

    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether nothing was found that would fail an erasure."""
        return not self.problems


CANNOT_LOOK = "this kind cannot look without acting"
CANNOT_EXPORT = "this kind cannot read a subject's records without acting"


@dataclass(frozen=True)
class Preview:
    """What erase() would take now, found without changing anything: `counts` by part, never a value
    (`{"tables": {name: rows}}`, `{"templates": {template: {"versions": n, "delete_markers": m}}}`,
    `{"snapshots": {id: {"files": [...], "rows": n}}}`), `items` as erase() would report them, and the
    snapshot hits it would record. `looked` False: the kind cannot look without acting, `note` says so."""

    looked: bool
    items: int = 0
    counts: Mapping[str, Any] = field(default_factory=dict)
    snapshots: tuple[SnapshotHit, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class Part:
    """One part of a subject's export (Art. 15 access), named within its system's folder of the archive:
    JSON-able `records`, written one JSON line each, or `content`, bytes in chunks (an object as stored);
    neither: nothing could be read, and `note` says why."""

    name: str
    records: Iterable[Any] | None = None
    content: Iterable[bytes] | None = None
    note: str | None = None



# Told, before a rewritten file is swapped in, its path and the rows it removes per subject (in
# the order erase_many was given them), so that the count survives a kill just after the swap.
Journal = Callable[[str, list[int]], None]


class Connector(ABC):
    """Erases one subject from one system. Idempotent: erasing twice finds nothing the
    second time. Library errors leave as TransientError or PermanentError."""

    kind: ClassVar[str]
    config_class: ClassVar[type[SystemConfig]]
    batches: bool = False  # shares one pass among many subjects: the worker coalesces requests
    # a pass that batches waits `batch_wait_seconds` for more requests to join: worth it where a pass is costly
    # (a snapshot rewrite reads every file); a kind whose pass is cheap (sql) takes those waiting now
    batch_waits: bool = True

    def __init__(self, config: Any) -> None:
        self.config = config

    @abstractmethod
    def erase(self, subject: Subject) -> Outcome:
        """Remove everything of the subject's in this system."""

    @abstractmethod
    def verify(self, subject: Subject) -> int:
        """How many items of the subject's are still there (0 after a good erase)."""

    def locate(self, subject: Subject) -> tuple[SnapshotHit, ...]:
        """Snapshots holding the subject, recorded before erase() so a crash cannot lose them."""
        return ()

    def locate_many(self, subjects: Sequence[Subject]) -> list[tuple[SnapshotHit, ...]]:
        """locate() for each subject, in order; a kind that batches does it in one pass."""
        return [self.locate(subject) for subject in subjects]

    def erase_many(self, subjects: Sequence[Subject],
                   journal: Journal | None = None) -> Sequence[Outcome | ConnectorError]:
        """erase() for each subject, in order, each with its own counts; a kind that batches does it in one pass.
        A subject the pass could not erase while the others could (its rows broke a set-based statement, say)
        gets its error in its place; an error raised fails them all. A kind that swaps files in tells `journal`
        before each swap; the others have nothing to tell."""
        return [self.erase(subject) for subject in subjects]

    def verify_many(self, subjects: Sequence[Subject]) -> list[int]:
        """verify() for each subject, in order; a kind that batches does it in one pass."""
        return [self.verify(subject) for subject in subjects]

    def with_earlier(self, outcome: Outcome, earlier: Mapping[str, int]) -> Outcome:
        """The outcome plus what an earlier attempt journaled and did (journal key -> items) that this one found
        already done: counted in its items, listed under `by_an_earlier_attempt` (a kind whose journal keys are
        entries of its own evidence, as the snapshot kind's files, lists them there instead)."""
        return by_an_earlier_attempt(outcome, earlier)

    def use_pseudonym_key(self, key: Callable[[], bytes]) -> None:  # noqa: B027 - a hook with a no-op default
        """Keep the worker's pseudonym key (a kind that writes keyed pseudonyms, as sql's `{ hash = true }`,
        makes them under it, so a value gets the same one in every process); `key()` reads it when needed."""

    def check(self, patterns: Patterns | None = None) -> Checked:
        """Look at the system without changing anything: does it take this config (tables, columns, buckets,
        locations)? `patterns`: each identifier type's pattern, for a column's type to be checked against."""
        return Checked(notes=("no read-only probe for this kind",))

    def preview(self, subject: Subject) -> Preview:
        """What erase() would take now, counted by the erase's own matching without changing anything
        (connectors/<kind>/preview.py); the default: the kind cannot look without acting, and says so."""
        return Preview(looked=False, note=CANNOT_LOOK)

    def export(self, subject: Subject, *, contents: bool = False) -> Iterator[Part]:
        """The subject's records, part by part, read without changing anything (Art. 15 access); `contents`:
        stored objects' bodies too, not only their list. The default: none, and a note saying so."""
        yield Part("", note=CANNOT_EXPORT)

    def close(self) -> None:  # noqa: B027 - a hook with a no-op default, not abstract
        """Release connections and clients."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def by_an_earlier_attempt(outcome: Outcome, earlier: Mapping[str, int]) -> Outcome:
    """Connector.with_earlier's default: the items counted, the keys listed under `by_an_earlier_attempt`."""
    evidence = {**outcome.evidence, "by_an_earlier_attempt": dict(sorted(earlier.items()))}
    return replace(outcome, items_erased=outcome.items_erased + sum(earlier.values()), evidence=evidence)


def one_at_a_time(subjects: Sequence[Subject],
                  journal: Journal | None) -> Iterator[tuple[Subject, Callable[[str, int], None] | None]]:
    """For a kind that erases one subject after another: each subject with a `tell(key, items)` that journals
    the items for it alone (0 for the others), or None when there is no journal."""
    def teller(i: int, journal: Journal) -> Callable[[str, int], None]:
        return lambda key, items: journal(key, [items if j == i else 0 for j in range(len(subjects))])

    for i, subject in enumerate(subjects):
        yield subject, None if journal is None else teller(i, journal)


def every_one(done: Sequence[Outcome | ConnectorError]) -> list[Outcome]:
    """erase_many's outcomes where every subject must have been erased (a replay, a guard fix): the first
    subject's error raised if any failed."""
    for outcome in done:
        if isinstance(outcome, ConnectorError):
            raise outcome
    return list(done)  # type: ignore[arg-type]


def retry_blips(fn: Callable[..., T]) -> Callable[..., T]:
    """Retry a call a few times within one attempt when it raises TransientError."""
    return tenacity.retry(
        retry=tenacity.retry_if_exception_type(TransientError),
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )(fn)

