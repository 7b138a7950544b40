"""Lineage from MLflow: the dataset sources a registered model version's run logged, mapped
to snapshots of this config, and the tags that mark a flagged model version in MLflow.
mlflow is the optional `[mlflow]` extra, imported only inside the functions that use it."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from sqlalchemy import select
from sqlalchemy.engine import make_url

from connectors.base import SystemConfig
from worker.config import Config, bound_mlflow_http
from worker.engine import lineage
from worker.errors import ErasureError, InputError
from worker.runtime import Runtime
from worker.store.models import FlagState, ModelFlag

log = structlog.get_logger("erasure.mlflow")
NEEDS_EXTRA = "erasure lineage import-mlflow needs the [mlflow] extra: pip install 'erasure-worker[mlflow]'"
FLAGGED_TAG, STATE_TAG, REQUESTS_TAG = "erasure.flagged", "erasure.flag_state", "erasure.requests"
TAG_VALUE_LIMIT = 5000  # the longest model version tag value MLflow servers took before 3.2 (since: 100 000)
MORE = re.compile(r"\+([0-9]{1,9}) more")
FINAL_ERRORS = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "PERMISSION_DENIED",
                          "UNAUTHENTICATED"})  # trying again cannot help
URI_KEYS = ("uri", "path", "url")  # artifact sources; delta, spark and UC volume sources; http sources
SCHEMES = {"s3a": "s3", "s3n": "s3"}  # Spark's names for s3


class MissingExtra(Exception):
    """mlflow is not installed."""


@dataclass(frozen=True)
class Place:
    """Where a URI or a location points: scheme ("file" for local), host or bucket, path parts."""

    scheme: str
    host: str
    parts: tuple[str, ...]

    def shown(self) -> str:
        """The place as a summary shows it, without credentials, query or fragment."""
        return "/".join((self.host, *self.parts)) if self.scheme != "file" else "/" + "/".join(self.parts)


def place_of(uri: str) -> Place | None:
    """The place a URI or absolute path names; None for a relative path or one with '..'."""
    parts = urlsplit(uri)
    scheme = SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme in ("", "file"):
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            return Place("file", parts.netloc, ())  # another machine's disk: never a location here
        path = unquote(parts.path) if scheme == "file" else uri
        if not path.startswith("/") or ".." in path.split("/"):
            return None
        return Place("file", "", PurePosixPath(path).parts[1:])
    if ".." in parts.path.split("/"):
        return None
    return Place(scheme, parts.hostname or "", tuple(p for p in parts.path.split("/") if p))


def location_of(system: SystemConfig) -> Place | None:
    """The place of a snapshot system's location (a relative folder is taken from here, as the connector does)."""
    location = str(getattr(system, "location", ""))
    if "://" not in location:
        location = Path(location).absolute().as_posix()
    return place_of(location)


def snapshots_of(config: Config, source_type: str, source: dict[str, Any]) -> tuple[set[str], Place | None]:
    """The snapshots one logged dataset source was read from, and its place (None if it names none)."""
    uri = next((source[k] for k in URI_KEYS if isinstance(source.get(k), str) and source[k]), None)
    where = place_of(uri) if uri else None
    if where is None:
        return set(), None
    version = source.get("delta_table_version") if source_type == "delta_table" else None
    found = set()
    for system in config.systems:
        home = location_of(system) if system.kind == "snapshot" else None
        if home is None or (where.scheme, where.host) != (home.scheme, home.host):
            continue
        if where.parts[:len(home.parts)] != home.parts:
            continue
        rest = where.parts[len(home.parts):]
        if not rest and isinstance(version, int) and not isinstance(version, bool) and version >= 0:
            folder = str(version)  # a Delta table at the location, read at a version
        elif len(rest) == 1 and where.scheme == "file" and Path("/", *where.parts).is_file():
            continue  # a data file directly in the location belongs to no snapshot folder
        elif rest:
            folder = rest[0]
        else:
            continue  # the whole location: which snapshot is unknown
        try:
            found.add(lineage.check_snapshot(config, f"{system.name}:{folder}"))
        except InputError:
            continue
    return found, where


@dataclass
class Summary:
    """What one import saw and did."""

    runs_seen: int = 0
    model_versions: int = 0
    lineage_rows_added: int = 0
    sources_unmapped: int = 0
    unmapped: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: list[dict[str, str]] = field(default_factory=list)
    guarded: list[dict[str, Any]] = field(default_factory=list)  # flagged at once: trained on guarded rows
    refused: list[dict[str, str]] = field(default_factory=list)  # --require-clean: not recorded

    def skip(self, mv: Any, reason: str) -> None:
        """Note a model version that got no lineage, and why."""
        self.skipped.append({"model": mv.name, "version": str(mv.version), "reason": reason})

    def to_json(self) -> dict[str, Any]:
        """The summary as `--json` prints it."""
        return {
            "runs_seen": self.runs_seen, "model_versions": self.model_versions,
            "lineage_rows_added": self.lineage_rows_added, "sources_unmapped": self.sources_unmapped,
            "unmapped": [{"scheme": s, "path": p, "count": n} for (s, p), n in sorted(self.unmapped.items())],
            "skipped_versions": self.skipped, "guarded_versions": self.guarded, "refused_versions": self.refused,
        }

    def show(self) -> str:
        """The summary for people."""
        lines = [f"runs seen {self.runs_seen}, model versions {self.model_versions}, "
                 f"lineage rows added {self.lineage_rows_added}, sources unmapped {self.sources_unmapped}"]
        lines += [f"unmapped  {s}  {p}  ({n})" for (s, p), n in sorted(self.unmapped.items())]
        lines += [f"skipped   {s['model']} {s['version']}: {s['reason']}" for s in self.skipped]
        lines += [f"flagged   {g['model']} {g['version']}: trained on guarded rows in "
                  f"{', '.join(f'{s} ({n})' for s, n in g['snapshots'].items())}" for g in self.guarded]
        lines += [f"refused   {r['reason']}" for r in self.refused]
        return "\n".join(lines)


def _mlflow() -> Any:
    """The mlflow package, or MissingExtra."""
    try:
        import mlflow
        import mlflow.exceptions
    except ImportError:
        raise MissingExtra(NEEDS_EXTRA) from None
    return mlflow


def _client(mlflow: Any, tracking_uri: str) -> Any:
    """A client for the tracking and registry store; a SQLite store must exist (MLflow would make an empty one)."""
    url = make_url(tracking_uri) if tracking_uri.startswith("sqlite:") else None
    if url and url.database and url.database != ":memory:" and not Path(url.database).is_file():
        raise InputError(f"--tracking-uri: no MLflow store at {url.database}")
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def import_runs(rt: Runtime, tracking_uri: str | None, screen: lineage.Screen | None = None,
                require_clean: bool = False) -> Summary:
    """Record, for every registered model version, the snapshots its run's datasets came from, each
    new one checked against the guard with `screen` (as `lineage.add` does)."""
    mlflow = _mlflow()
    if not tracking_uri:
        raise InputError("--tracking-uri: give one, or set tracking_uri in the config's [mlflow] table")
    try:
        return _import(rt, _client(mlflow, tracking_uri), mlflow.exceptions.MlflowException, screen, require_clean)
    except mlflow.exceptions.MlflowException as exc:
        message = (str(exc).strip().splitlines() or [""])[0][:200]
        if exc.error_code == "INVALID_PARAMETER_VALUE":
            raise InputError(f"--tracking-uri: {message}") from None
        raise ErasureError(f"MLflow: {exc.error_code}: {message}") from None


def _import(rt: Runtime, client: Any, mlflow_error: type[Exception], screen: lineage.Screen | None,
            require_clean: bool) -> Summary:
    summary = Summary()
    runs: dict[str, tuple[set[str], datetime | None] | None] = {}  # None: the run is gone
    for mv in _model_versions(client):
        summary.model_versions += 1
        if mv.run_id and mv.run_id not in runs:
            try:
                runs[mv.run_id] = _read_run(rt.config, client.get_run(mv.run_id), summary)
            except mlflow_error as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
                runs[mv.run_id] = None
        run = runs.get(mv.run_id or "")
        if not mv.run_id or run is None or not run[0]:
            summary.skip(mv, "no run" if not mv.run_id else "its run is gone from MLflow" if run is None
                         else "no dataset source of its run is a snapshot of this config")
            continue
        try:  # trained when its run started: a snapshot rewritten before that no longer held the subject
            added = lineage.add(rt, mv.name, str(mv.version), sorted(run[0]), trained_at=run[1], screen=screen,
                                require_clean=require_clean)
        except lineage.NotClean as exc:
            summary.refused.append({"model": mv.name, "version": str(mv.version), "reason": str(exc)})
            continue
        except InputError as exc:
            summary.skip(mv, str(exc))
            continue
        summary.lineage_rows_added += added.new
        if added.guarded:
            summary.guarded.append({"model": mv.name, "version": str(mv.version), "snapshots": added.guarded})
    summary.runs_seen = len(runs)
    log.info("mlflow.imported", **{k: v for k, v in summary.to_json().items() if isinstance(v, int)})
    return summary


def _model_versions(client: Any) -> Iterator[Any]:
    """Every registered model version, page by page."""
    token = None
    while True:
        page = client.search_model_versions(max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _read_run(config: Config, run: Any, summary: Summary) -> tuple[set[str], datetime | None]:
    snapshots: set[str] = set()
    for dataset_input in run.inputs.dataset_inputs if run.inputs else ():
        dataset = dataset_input.dataset
        try:
            source = json.loads(dataset.source)
        except (TypeError, ValueError):
            source = {}
        found, where = snapshots_of(config, dataset.source_type, source if isinstance(source, dict) else {})
        if not found:
            summary.sources_unmapped += 1
            summary.unmapped[(where.scheme, where.shown()[:200]) if where else (dataset.source_type, "-")] += 1
        snapshots |= found
    started = run.info.start_time
    return snapshots, datetime.fromtimestamp(started / 1000, UTC) if started else None


class TagFailed(Exception):
    """MLflow did not take the tags; `final` when trying again cannot help."""

    def __init__(self, error: str, final: bool) -> None:
        super().__init__(error)
        self.error, self.final = error, final


def tag(rt: Runtime, model: str, version: str, attempt: int) -> float | None:
    """One attempt at tagging a flagged model version in MLflow; returns the seconds to wait before
    the next attempt, or None when done or given up (logged: the erasure is recorded either way)."""
    try:
        _set_tags(rt, model, version)
    except TagFailed as exc:
        settings = rt.config.worker
        if exc.final or attempt >= settings.max_attempts:
            log.warning("mlflow.tag_failed", model=model, version=version, attempts=attempt, error=exc.error)
            return None
        log.info("mlflow.tag_retry", model=model, version=version, attempt=attempt, error=exc.error)
        return settings.backoff(attempt)
    return None


def _set_tags(rt: Runtime, model: str, version: str) -> None:
    """Tag a model version from its flags in the store: flagged, the least advanced state of its
    flags (open until every one has moved on) and its requests, newest first."""
    uri = rt.config.mlflow_tracking_uri
    with rt.transaction() as session:
        flags = session.execute(
            select(ModelFlag.request_id, ModelFlag.state).where(ModelFlag.model == model, ModelFlag.version == version)
            .order_by(ModelFlag.flagged_at.desc(), ModelFlag.id.desc())
        ).all()
    if not uri or not flags:
        return
    state = next(s for s in FlagState if s in {f.state for f in flags})
    try:
        bound_mlflow_http()
        client = _client(_mlflow(), uri)
        earlier = client.get_model_version(model, version).tags.get(REQUESTS_TAG, "")
        client.set_model_version_tag(model, version, FLAGGED_TAG, "true")
        client.set_model_version_tag(model, version, STATE_TAG, state)
        client.set_model_version_tag(model, version, REQUESTS_TAG, requests_tag([f.request_id for f in flags], earlier))
    except Exception as exc:  # whatever MLflow raises (HTTP, its own store's SQL), the caller tries again or gives up
        code = str(getattr(exc, "error_code", "") or "")
        raise TagFailed(code or type(exc).__name__,
                        final=code in FINAL_ERRORS or isinstance(exc, (MissingExtra, InputError))) from None


def requests_tag(newest: list[str], earlier: str, limit: int = TAG_VALUE_LIMIT) -> str:
    """The requests tag: these ids newest first, then those already in the tag, as many as fit in
    `limit` characters, and `+N more` for the rest (N at least: ids left out before stay counted)."""
    shown, hidden = [], 0
    for item in (part.strip() for part in earlier.split(",")):
        more = MORE.fullmatch(item)
        if more:
            hidden += int(more[1])
        elif item:
            shown.append(item)
    ids = list(dict.fromkeys([*newest, *shown]))
    total = max(len(ids), len(set(shown)) + hidden)
    if total == len(ids) and len(",".join(ids)) <= limit:
        return ",".join(ids)
    room, used, kept = limit - len(f",+{total} more"), -1, 0
    for request_id in ids:
        used += 1 + len(request_id)
        if used > room:
            break
        kept += 1
    return ",".join([*ids[:kept], f"+{total - kept} more"])
