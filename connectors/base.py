"""What every connector is: a tiny interface, the subject it erases, the outcome it reports,
and the reader that turns one `[[systems]]` table of the config into a frozen dataclass."""

from __future__ import annotations

import itertools
import os
import re
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar, Self, TypeVar

import tenacity

from connectors.errors import ConfigError, ConnectorError, PermanentError, TransientError
from connectors.normalize import Fold

T = TypeVar("T")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
REASON_LIMIT = 500


@dataclass(frozen=True)
class Subject:
    """One person's identifiers: each type maps to validated, normalized values."""

    identifiers: Mapping[str, tuple[str, ...]]

    def values(self, id_type: str) -> tuple[str, ...]:
        """The values of one identifier type, or () when the request has none."""
        return self.identifiers.get(id_type, ())

    def all_values(self) -> frozenset[str]:
        """Every value of every type, for redaction."""
        return frozenset(v for vs in self.identifiers.values() for v in vs)

    def to_json(self) -> dict[str, list[str]]:
        """The JSON form stored with the request."""
        return {k: list(v) for k, v in sorted(self.identifiers.items()) if v}

    @classmethod
    def from_json(cls, data: Mapping[str, Iterable[str]]) -> Subject:
        """The inverse of to_json."""
        return cls({k: tuple(sorted(set(v))) for k, v in data.items() if v})


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


@dataclass(frozen=True)
class Retention:
    """Art. 17(3): what a law obliges to keep (`retain = { reason = "...", until = "YYYY-MM-DD" }`),
    kept through `until` and erased after it; kept with no end when `until` is absent."""

    reason: str
    until: date | None = None

    @property
    def ends_at(self) -> datetime | None:
        """When the retention is over: the start of the day after `until`, in UTC."""
        return None if self.until is None else datetime.combine(self.until + timedelta(days=1), time(), UTC)

    def holds(self, now: datetime) -> bool:
        """Whether it still keeps the items at `now`."""
        return self.ends_at is None or now < self.ends_at

    def describe(self) -> str:
        """One line for a system's `reason`: why, and until when."""
        return f"retained{f' until {self.until}' if self.until else ''}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        """As evidence and reports show it."""
        return {"reason": self.reason, "until": None if self.until is None else self.until.isoformat()}


@dataclass(frozen=True)
class SystemConfig:
    """The fields every `[[systems]]` table has; each kind subclasses it with its own.
    `retain` and `training` are read for every kind by the config loader, so a kind's own reader
    never sees them. `training`: the system holds training data, so an objection to training use
    (a request of scope "training") erases it; a kind whose systems are training data by nature
    (snapshot) declares it by giving the field the default True."""

    name: str
    kind: str
    retain: Retention | None = field(default=None, kw_only=True)
    training: bool = field(default=False, kw_only=True)

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse and validate one system table; raise ConfigError naming the key."""
        raise NotImplementedError

    @property
    def identifier_types(self) -> frozenset[str]:
        """The identifier types this system matches on."""
        raise NotImplementedError

    def problem_with(self, subject: Subject) -> str | None:
        """Why this subject must be refused for this system, or None (checked at intake)."""
        return None


# Told, before a rewritten file is swapped in, its path and the rows it removes per subject (in
# the order erase_many was given them), so that the count survives a kill just after the swap.
Journal = Callable[[str, list[int]], None]


class Connector(ABC):
    """Erases one subject from one system. Idempotent: erasing twice finds nothing the
    second time. Library errors leave as TransientError or PermanentError."""

    kind: ClassVar[str]
    config_class: ClassVar[type[SystemConfig]]
    batches: bool = False  # shares one pass among many subjects: the worker coalesces requests

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


INTEGER = re.compile(r"0|-?[1-9][0-9]{0,18}")  # as written canonically: "042" and "-0" are not 42 and 0


def as_integer(value: str) -> int | None:
    """The value as an integer if it is one written plainly ("42", not "42.0", " 42" or "042": an
    integer column cannot tell "042" from 42, and a match must never take more than was asked)."""
    return int(value) if INTEGER.fullmatch(value) else None


@dataclass(frozen=True)
class Template:
    """A key or prefix with `{identifier_type}` placeholders; values go in literally."""

    text: str
    parts: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> frozenset[str]:
        """The identifier types named by the placeholders."""
        return frozenset(f for _, f in self.parts if f)

    def render(self, subject: Subject) -> list[str]:
        """Every filled-in string, one per combination of values; [] if a type has none."""
        names = sorted(self.fields)
        rendered = []
        for combo in itertools.product(*(subject.values(n) for n in names)):
            chosen = dict(zip(names, combo, strict=True))
            rendered.append("".join(lit + (chosen[f] if f else "") for lit, f in self.parts))
        return rendered


@dataclass(frozen=True)
class EnvSecret:
    """A secret held by the environment variable the config names, read only when it is used: the
    config (and its repr) holds the name, never the value."""

    name: str

    def reveal(self) -> str:
        """The variable's value now; a PermanentError naming the variable (never a value) when it is
        unset or empty."""
        value = os.environ.get(self.name, "")
        if not value:
            raise PermanentError(f"the environment variable {self.name} is not set")
        return value


class ConfigReader:
    """Reads one table of the config file; every error names the file, the place and the key."""

    def __init__(self, path: str, place: str, raw: Mapping[str, Any],
                 identifier_types: frozenset[str] | Mapping[str, Fold]):
        self.path = path
        self.place = place
        self.raw = raw
        self.folds: Mapping[str, Fold] = (
            dict(identifier_types) if isinstance(identifier_types, Mapping) else dict.fromkeys(identifier_types, ())
        )

    @property
    def identifier_types(self) -> frozenset[str]:
        """The identifier types the `[identifiers]` table declares."""
        return frozenset(self.folds)

    def fold(self, id_type: str) -> Fold:
        """How the identifier type's values are normalized: the stored side is folded the same way."""
        return self.folds[id_type]

    def exact_columns(self, columns: Iterable[str], key: str = "match") -> frozenset[str]:
        """The `where` columns that `match` says are stored folded already and are compared as they are:
        `match = "exact"` (all), `match = { email = "exact" }` (some), or the default, "normalized"
        (none: the stored side is folded as the request's value was)."""
        columns = list(columns)
        given = self.raw.get(key, "normalized")
        if isinstance(given, str):
            given = dict.fromkeys(columns, given)
        if not isinstance(given, Mapping):
            raise self.error(key, '"exact", "normalized", or a table of where column = "exact" | "normalized"')
        for column, value in given.items():
            if column not in columns:
                raise self.error(f"{key}.{column}", "is not a column of `where`")
            if value not in ("exact", "normalized"):
                raise self.error(f"{key}.{column}", f'must be "exact" or "normalized", not {value!r}')
        return frozenset(column for column, value in given.items() if value == "exact")

    def error(self, key: str, problem: str) -> ConfigError:
        """A ConfigError for one key of this table."""
        return ConfigError(f"{self.path}: {self.place}: {key}: {problem}")

    def only(self, *allowed: str) -> None:
        """Refuse keys this table does not know (a typo must not be ignored silently)."""
        for key in self.raw:
            if key not in allowed:
                raise self.error(key, f"unknown key (expected one of: {', '.join(allowed)})")

    def require(self, key: str, kind: type[T]) -> T:
        """A key that must be present, of the given TOML type."""
        if key not in self.raw:
            raise self.error(key, "missing")
        return self._typed(key, self.raw[key], kind)

    def optional(self, key: str, kind: type[T], default: T) -> T:
        """A key that may be absent."""
        return self._typed(key, self.raw[key], kind) if key in self.raw else default

    def text(self, key: str, default: str | None = None) -> str:
        """A non-empty string key (required unless a default is given)."""
        value = self.require(key, str) if default is None else self.optional(key, str, default)
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def child(self, key: str, raw: Any, index: int | None = None) -> ConfigReader:
        """A reader for a nested table, e.g. `tables[1]` of a sql system."""
        place = (key if self.place == "top level" else f"{self.place} {key}") + (
            f"[{index}]" if index is not None else ""
        )
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{self.path}: {place}: must be a table")
        return ConfigReader(self.path, place, raw, self.folds)

    def retention(self, key: str = "retain") -> Retention | None:
        """An optional `retain = { reason = "...", until = "YYYY-MM-DD" }` (until may be omitted)."""
        if key not in self.raw:
            return None
        table = self.child(key, self.raw[key])
        table.only("reason", "until")
        reason = table.text("reason").strip()
        if len(reason) > REASON_LIMIT or not reason.isprintable():
            raise table.error("reason", f"one line of at most {REASON_LIMIT} printable characters")
        until = table.raw.get("until")
        if until is None:
            return Retention(reason)
        if isinstance(until, str) and DAY.fullmatch(until):
            try:
                until = date.fromisoformat(until)
            except ValueError:
                raise table.error("until", f"{until!r} is not a date") from None
        if isinstance(until, datetime) or not isinstance(until, date):
            raise table.error("until", 'a date written "YYYY-MM-DD"')
        return Retention(reason, until)

    def secret(self, key: str) -> EnvSecret:
        """The environment variable this key names (`secret_env = "BILLING_SECRET"`): the file names the
        variable, never the secret, and it is read when used (EnvSecret.reveal), not now, so only the
        processes that use it need it. Refused when the name is not an environment variable's."""
        name = self.text(key)
        if not ENV_NAME.fullmatch(name):
            # not repeated: a secret written here by mistake must not reach a log
            raise self.error(key, "names an environment variable (A-Z, 0-9, _), never holds the secret itself")
        return EnvSecret(name)

    def identifier(self, key: str, name: Any) -> str:
        """An identifier type that the `[identifiers]` table declares."""
        if not isinstance(name, str) or name not in self.identifier_types:
            known = ", ".join(sorted(self.identifier_types)) or "none declared"
            raise self.error(key, f"unknown identifier type {name!r} (known: {known})")
        return name

    def template(self, key: str, text: Any) -> Template:
        """A template whose placeholders are all known identifier types, at least one."""
        if not isinstance(text, str) or not text:
            raise self.error(key, "must be a non-empty string")
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise self.error(key, f"bad template {text!r}: {exc}") from exc
        parts: list[tuple[str, str | None]] = []
        for literal, field_name, spec, conversion in parsed:
            if field_name is not None and (spec or conversion or not field_name.isidentifier()):
                raise self.error(key, f"placeholders are plain names like {{user_id}}, not {text!r}")
            parts.append((literal, self.identifier(key, field_name) if field_name is not None else None))
        if not any(f for _, f in parts):
            raise self.error(key, f"{text!r} names no identifier: it would match every subject")
        return Template(text, tuple(parts))

    def _typed(self, key: str, value: Any, kind: type[T] | tuple[type, ...]) -> T:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.error(key, f"must be a {names}, got {type(value).__name__}")
        return value  # type: ignore[return-value]
