"""The configuration: `erasure.toml` read once into frozen dataclasses, and the environment.
This is the only module that reads environment variables."""

from __future__ import annotations

import calendar
import math
import os
import random
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors import registry
from connectors.base import ENV_NAME, ConfigReader, SystemConfig
from connectors.normalize import Fold
from worker.errors import ConfigError
from worker.identifiers import IdentifierType, Resolver, read_identifiers, read_resolvers

BACKOFF_JITTER = 0.2
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
DEADLINE = re.compile(r"\s*([1-9][0-9]?)\s+(day|days|month|months)\s*")
TOKEN_HASH = re.compile(r"[0-9a-f]{64}")
API_SCOPES = ("submit", "read", "operate")
TOKEN_NAME_LIMIT = 100  # a token's name, which the audit trail records as who acted
IMPLIED_SCOPES = {"operate": frozenset({"read"})}  # a token that settles manual tasks also reads what it settles
EVERY_SYSTEM = ("retain", "training")  # keys of every [[systems]] table, whatever its kind



@dataclass(frozen=True)
class WorkerSettings:
    """How the worker retries and leases."""

    max_attempts: int = 5
    lease_seconds: int = 600
    retry_backoff_seconds: float = 5.0
    retry_backoff_max_seconds: float = 600.0
    reconcile_seconds: float = 60.0
    batch_size: int = 1000  # most requests one pass of a batching kind (snapshot) erases together
    batch_wait_seconds: float = 1.0  # how long the first request waits for others to join its pass
    snapshot_part_mb: float = 128.0  # a snapshot pass over more is spread over workers, in parts of about this
    group_size: int = 50  # most requests one pass of any other kind takes along, each erased on its own
    shutdown_grace_seconds: float = 25.0  # after SIGTERM, how long running tasks may finish before handed back
    quorum_queues: bool = False  # RabbitMQ only: declare the queues as quorum queues
    guard_watch_seconds: float = 300.0  # how often beat has snapshot folders checked against the guard; 0: never
    task_reminder_days: int = 7  # a manual system's open task is warned of once its request is due this soon; 0: never

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before the attempt after `attempt`: exponential, capped, jittered."""
        return self._whole(self._backoff_base(attempt) * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER))

    def longest_backoff(self, attempt: int) -> float:
        """The most `backoff(attempt)` can be: after it, a retry that has not come is lost."""
        return self._whole(self._backoff_base(attempt) * (1 + BACKOFF_JITTER))

    def _whole(self, seconds: float) -> float:
        """RabbitMQ's delayed delivery for quorum queues counts whole seconds (and refuses less than one)."""
        return float(math.ceil(seconds)) if self.quorum_queues else seconds

    def _backoff_base(self, attempt: int) -> float:
        return min(self.retry_backoff_max_seconds, self.retry_backoff_seconds * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Deadline:
    """The time allowed to answer a request: a number of days or calendar months."""

    amount: int
    unit: str  # "days" | "months"

    def after(self, received: datetime) -> datetime:
        """The deadline of a request received at `received` (Jan 31 + 1 month = Feb 28/29)."""
        if self.unit == "days":
            return received + timedelta(days=self.amount)
        return add_months(received, self.amount)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later, clamped to the end of a shorter month."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API's tokens (SHA-256 hex of each token -> its scopes), the names some are given (who
    the audit trail says acted with one), and its body size cap."""

    tokens: Mapping[str, frozenset[str]] = field(default_factory=dict)
    max_body_bytes: int = 16384
    names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSettings:
    """The [models] table: where a flagged model version is announced (a signed POST), if anywhere."""

    notify_url: str | None = None
    secret_env: str | None = None  # the environment variable holding the signing secret, read when sending
    timeout_seconds: float = 10.0

    def secret(self) -> bytes:
        """The signing secret, read from the environment now (ConfigError naming the variable if unset)."""
        value = os.environ.get(self.secret_env or "", "")
        if not value:
            raise ConfigError(f"[models] secret_env: the environment variable {self.secret_env} is not set")
        return value.encode()


@dataclass(frozen=True)
class Config:
    """The whole configuration, validated."""

    path: Path
    store_url: str
    broker_url: str
    deadline: Deadline
    worker: WorkerSettings
    identifiers: Mapping[str, IdentifierType]
    resolvers: tuple[Resolver, ...]
    systems: tuple[SystemConfig, ...]
    mlflow_tracking_uri: str | None = None  # [mlflow] tracking_uri: where flagged model versions are tagged
    api: ApiSettings = ApiSettings()
    models: ModelSettings = ModelSettings()

    def system(self, name: str) -> SystemConfig:
        """The system of that name (KeyError if none)."""
        for system in self.systems:
            if system.name == name:
                return system
        raise KeyError(name)


def config_path(given: str | None = None) -> Path:
    """The config file: the --config option, else $ERASURE_CONFIG, else ./erasure.toml."""
    return Path(given or os.environ.get("ERASURE_CONFIG") or "erasure.toml")


def log_format() -> str | None:
    """The log format asked for by $ERASURE_LOG_FORMAT ("json" or "console"), if any."""
    return os.environ.get("ERASURE_LOG_FORMAT") or None


def otlp_endpoint() -> str | None:
    """Where traces go, if anywhere: $OTEL_EXPORTER_OTLP_ENDPOINT (or its _TRACES_ form), OTLP over HTTP;
    none when $OTEL_SDK_DISABLED is true (the OpenTelemetry SDK reads its other variables itself)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None


def secret_key_text() -> str | None:
    """The key for subject references from $ERASURE_SECRET_KEY, if set."""
    return os.environ.get("ERASURE_SECRET_KEY") or None


# MLflow waits 120 s and retries 7 times per HTTP call by default; tagging tries again on its own
MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}


def bound_mlflow_http() -> None:
    """Bound each MLflow HTTP call of this process to seconds, unless the environment sets its own
    bounds: an MLflow server that is down must not hold a worker (MLflow reads them at each call)."""
    for name, value in MLFLOW_HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)


def load(path: Path) -> Config:
    """Read and validate the config file; ConfigError names the file, the place and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (pass --config or set ERASURE_CONFIG)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse(raw, path)


def parse(raw: Mapping[str, Any], path: Path) -> Config:
    """Validate an already-decoded config document."""
    top = ConfigReader(str(path), "top level", raw, frozenset())
    top.only("store_url", "broker_url", "deadline_days", "deadline", "worker", "identifiers",
             "resolvers", "systems", "api", "mlflow", "models")
    identifiers = read_identifiers(top)
    folds = {name: kind.fold for name, kind in identifiers.items()}
    systems = _systems(top, folds)
    broker_url = _sqlite_beside(os.environ.get("ERASURE_BROKER_URL")
                                or top.optional("broker_url", str, "sqla+sqlite:///erasure-queue.db"), path)
    return Config(
        path=path,
        store_url=_sqlite_beside(os.environ.get("ERASURE_STORE_URL")
                                 or top.optional("store_url", str, "sqlite:///erasure.db"), path),
        broker_url=broker_url,
        deadline=_deadline(top),
        worker=_worker(top.child("worker", raw.get("worker", {})), broker_url),
        identifiers=identifiers,
        resolvers=read_resolvers(top, folds, systems),
        systems=systems,
        mlflow_tracking_uri=_mlflow_tracking_uri(top, path),
        api=_api(top.child("api", top.raw.get("api", {}))),
        models=_models(top.child("models", top.raw.get("models", {}))),
    )


def _models(reader: ConfigReader) -> ModelSettings:
    """The [models] table: `notify_url` (http or https), `secret_env` (required with it), `timeout_seconds`."""
    reader.only("notify_url", "secret_env", "timeout_seconds")
    if "notify_url" not in reader.raw:
        if reader.raw:
            raise reader.error("notify_url", "missing (the other keys say how to reach it)")
        return ModelSettings()
    url = reader.text("notify_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.error("notify_url", "an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise reader.error("notify_url", "no credentials in the URL: the notice is signed with secret_env's secret")
    secret_env = reader.text("secret_env")
    if not ENV_NAME.fullmatch(secret_env):
        raise reader.error("secret_env", "names an environment variable (A-Z, 0-9, _)")
    timeout = float(reader.optional("timeout_seconds", (int, float), 10.0))  # type: ignore[arg-type]
    if not 1 <= timeout <= 120:
        raise reader.error("timeout_seconds", "must be between 1 and 120")
    return ModelSettings(url, secret_env, timeout)


def _api(reader: ConfigReader) -> ApiSettings:
    """The [api] table: `tokens` maps a token's SHA-256 (never the token) to its scopes, or to a table of
    its scopes and a name (`{ scopes = ["operate"], name = "dpo-anna" }`)."""
    reader.only("tokens", "max_body_bytes")
    tokens = reader.child("tokens", reader.raw.get("tokens", {}))
    found, names = {}, {}
    for index, (digest, given) in enumerate(tokens.raw.items()):
        if not TOKEN_HASH.fullmatch(digest):
            # the key may be a token pasted by mistake: name its place, never its text
            raise tokens.error(f"key {index + 1}", "must be the token's SHA-256 as 64 lowercase hex digits")
        scopes = given
        if isinstance(given, Mapping):
            named = tokens.child(digest[:12] + "…", given)
            named.only("scopes", "name")
            scopes, name = named.raw.get("scopes"), named.text("name").strip()
            if len(name) > TOKEN_NAME_LIMIT or not name.isprintable():
                raise named.error("name", f"one line of at most {TOKEN_NAME_LIMIT} printable characters")
            names[digest] = name
        if not isinstance(scopes, list) or not scopes or not all(s in API_SCOPES for s in scopes):
            raise tokens.error(digest[:12] + "…", f"a non-empty list of scopes among {', '.join(API_SCOPES)}")
        found[digest] = frozenset(scopes).union(*(IMPLIED_SCOPES.get(s, ()) for s in scopes))
    max_body = reader.optional("max_body_bytes", int, 16384)
    if not 1024 <= max_body <= 1_048_576:
        raise reader.error("max_body_bytes", "must be between 1024 and 1048576")
    return ApiSettings(found, max_body, names)


def _mlflow_tracking_uri(top: ConfigReader, path: Path) -> str | None:
    """The [mlflow] table's tracking_uri, or $ERASURE_MLFLOW_TRACKING_URI over it."""
    table = top.child("mlflow", top.raw.get("mlflow", {}))
    table.only("tracking_uri")
    given = table.text("tracking_uri") if "tracking_uri" in table.raw else None
    uri = os.environ.get("ERASURE_MLFLOW_TRACKING_URI") or given
    return _sqlite_beside(uri, path) if uri else None


def training_default(config_class: type[SystemConfig]) -> bool:
    """Whether a kind's systems hold training data unless their table says otherwise: the default its
    config class gives the `training` field (true for snapshot, false for sql, s3 and stub)."""
    default = config_class.__dataclass_fields__["training"].default
    return default if isinstance(default, bool) else False


def _systems(top: ConfigReader, folds: Mapping[str, Fold]) -> tuple[SystemConfig, ...]:
    raw_systems = top.optional("systems", list, [])
    if not raw_systems:
        raise top.error("systems", "declare at least one [[systems]] table")
    systems: list[SystemConfig] = []
    for index, raw in enumerate(raw_systems):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        place = f"system {name!r}" if isinstance(name, str) else f"systems[{index}]"
        reader = ConfigReader(top.path, place, raw if isinstance(raw, Mapping) else {}, folds)
        if not isinstance(raw, Mapping):
            raise reader.error("systems", "must be a table")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            raise reader.error("name", "missing, or not a name of letters, digits, '-', '_' and '.'")
        if any(s.name == name for s in systems):
            raise reader.error("name", "two systems share this name")
        kind = reader.text("kind")
        known = registry.kinds()
        if kind not in known:
            raise reader.error("kind", f"unknown kind {kind!r} (known: {', '.join(known)})")
        try:
            connector = known[kind].load()
        except ConfigError as exc:
            raise reader.error("kind", str(exc)) from None
        # any kind may be retained whole, or hold training data: read here, hidden from the kind
        retain = reader.retention()
        training = reader.optional("training", bool, training_default(connector.config_class))
        reader.raw = {key: value for key, value in raw.items() if key not in EVERY_SYSTEM}
        systems.append(replace(connector.config_class.read(reader), retain=retain, training=training))
    return tuple(systems)


def _deadline(top: ConfigReader) -> Deadline:
    if "deadline" in top.raw and "deadline_days" in top.raw:
        raise top.error("deadline", "set deadline or deadline_days, not both")
    if "deadline" in top.raw:
        match = DEADLINE.fullmatch(top.require("deadline", str))
        if not match:
            raise top.error("deadline", 'write it like "1 month" or "30 days"')
        unit = "months" if match[2].startswith("month") else "days"
        return Deadline(int(match[1]), unit)
    days = top.optional("deadline_days", int, 30)
    if not 1 <= days <= 92:
        raise top.error("deadline_days", "must be between 1 and 92")
    return Deadline(days, "days")


def _worker(reader: ConfigReader, broker_url: str) -> WorkerSettings:
    reader.only("max_attempts", "lease_seconds", "retry_backoff_seconds", "retry_backoff_max_seconds",
                "reconcile_seconds", "batch_size", "batch_wait_seconds", "group_size", "shutdown_grace_seconds",
                "quorum_queues", "guard_watch_seconds", "task_reminder_days", "snapshot_part_mb")
    lease_seconds = reader.optional("lease_seconds", int, 600)
    settings = WorkerSettings(
        max_attempts=reader.optional("max_attempts", int, 5),
        lease_seconds=lease_seconds,
        retry_backoff_seconds=float(reader.optional("retry_backoff_seconds", (int, float), 5.0)),  # type: ignore[arg-type]
        retry_backoff_max_seconds=float(reader.optional("retry_backoff_max_seconds", (int, float), 600.0)),  # type: ignore[arg-type]
        reconcile_seconds=float(reader.optional("reconcile_seconds", (int, float), 60.0)),  # type: ignore[arg-type]
        batch_size=reader.optional("batch_size", int, 1000),
        batch_wait_seconds=float(reader.optional("batch_wait_seconds", (int, float), 1.0)),  # type: ignore[arg-type]
        group_size=reader.optional("group_size", int, 50),
        snapshot_part_mb=float(reader.optional("snapshot_part_mb", (int, float), 128.0)),  # type: ignore[arg-type]
        shutdown_grace_seconds=float(reader.optional("shutdown_grace_seconds", (int, float),  # type: ignore[arg-type]
                                                     min(25.0, lease_seconds / 2))),
        quorum_queues=reader.optional("quorum_queues", bool, False),
        guard_watch_seconds=float(reader.optional("guard_watch_seconds", (int, float), 300.0)),  # type: ignore[arg-type]
        task_reminder_days=reader.optional("task_reminder_days", int, 7),
    )
    if settings.max_attempts < 1:
        raise reader.error("max_attempts", "must be at least 1")
    if settings.lease_seconds < 5:
        raise reader.error("lease_seconds", "must be at least 5")
    if settings.reconcile_seconds < 1:
        raise reader.error("reconcile_seconds", "must be at least 1")
    if settings.guard_watch_seconds != 0 and settings.guard_watch_seconds < 10:
        raise reader.error("guard_watch_seconds", "must be 0 (never) or at least 10")
    if not 0 <= settings.task_reminder_days <= 92:
        raise reader.error("task_reminder_days", "must be 0 (never) or a number of days up to 92")
    if not 1 <= settings.batch_size <= 100_000:
        raise reader.error("batch_size", "must be between 1 and 100000")
    if not 0 <= settings.batch_wait_seconds <= 60:
        raise reader.error("batch_wait_seconds", "must be between 0 and 60")
    if settings.batch_wait_seconds >= settings.lease_seconds / 2:
        raise reader.error("batch_wait_seconds", "must be under half of lease_seconds")
    if not 1 <= settings.group_size <= 1000:
        raise reader.error("group_size", "must be between 1 and 1000")
    if not 0 <= settings.snapshot_part_mb <= 1_000_000:
        raise reader.error("snapshot_part_mb", "must be between 0 (a part per file) and 1000000")
    if not 0 <= settings.shutdown_grace_seconds < settings.lease_seconds:
        # a task still running when its lease ends may be claimed by a second worker
        raise reader.error("shutdown_grace_seconds", "must be 0 or more and under lease_seconds")
    if settings.quorum_queues and not broker_url.startswith(AMQP_SCHEMES):
        raise reader.error("quorum_queues", "only RabbitMQ (an amqp:// broker_url) has quorum queues")
    return settings


def _sqlite_beside(url: str, config: Path) -> str:
    """A relative SQLite path is taken relative to the config file, not the current folder."""
    for scheme in ("sqlite:///", "sqla+sqlite:///"):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            if rest and not rest.startswith("/") and not rest.startswith(":memory:"):
                return scheme + str((config.parent / rest).resolve())
    return url
