"""How one `[[systems]]` table of the config becomes a frozen dataclass: the fields every system
has (SystemConfig, its Retention), the reader that checks each key and names it in every error
(ConfigReader), and the values a reader makes (Template, EnvSecret)."""

from __future__ import annotations

import itertools
import os
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Self, TypeVar

from connectors.errors import ConfigError, PermanentError
from connectors.normalize import Fold
from connectors.subject import Subject

T = TypeVar("T")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
REASON_LIMIT = 500


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
