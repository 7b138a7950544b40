"""The Celery tasks: thin wrappers that hand a message to intake, the pipeline or MLflow tagging.
A malformed `erasure.submit` is logged with its reason and dropped; the worker goes on.
A store outage is retried with backoff, so a message is not lost while the store is down."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from celery.signals import setup_logging, worker_process_init
from sqlalchemy.exc import DBAPIError, OperationalError

from worker import logs, tracing
from worker.engine import fanout, intake, parts, passes, reconcile
from worker.errors import InputError, TransientError, one_line
from worker.integrations import mlflow_lineage, notify
from worker.queue import dispatch
from worker.queue import shutdown as _shutdown  # noqa: F401 - connects the graceful stop to the worker's signals
from worker.queue.celery_app import app
from worker.store.engine import StoreUnavailable

log = structlog.get_logger("erasure.tasks")
STORE_OUTAGE = (StoreUnavailable, OperationalError, DBAPIError)
OUTAGE_RETRY = {"autoretry_for": STORE_OUTAGE, "retry_backoff": 2, "retry_backoff_max": 300,
                "max_retries": 50, "retry_jitter": True}


@app.task(name="erasure.submit", ignore_result=True, **OUTAGE_RETRY)
def submit(*args: Any, **fields: Any) -> None:
    """Intake from any Celery or AMQP client; bad input is dropped with a logged reason."""
    try:
        if args:
            raise InputError("erasure.submit takes keyword arguments only")
        unknown = set(fields) - {"subject", "requested_by", "idempotency_key", "scope"}
        if unknown:
            raise InputError(f"unknown fields: {', '.join(sorted(map(_field_name, unknown)))[:200]}")
        done = intake.submit(dispatch.current(), fields.get("subject"), fields.get("requested_by"),
                             fields.get("idempotency_key"), fields.get("scope"))
    except InputError as exc:
        log.warning("intake.dropped", reason=str(exc))
        return
    log.info("intake.accepted", request_id=done.request_id, duplicate=done.duplicate)


def _field_name(name: str) -> str:
    """A field's name fit for a log: a value sent as a name is never echoed."""
    return name if name.isidentifier() and len(name) <= 40 else "(not a plain name)"


@app.task(name="erasure.start", bind=True, ignore_result=True, **OUTAGE_RETRY)
def start(self: Task, request_id: str) -> None:
    """Resolve one request and fan it out; a resolver that is briefly down is retried."""
    rt = dispatch.current()
    try:
        with tracing.span("erasure.start", request_id, attempt=self.request.retries + 1):
            fanout.start(rt, request_id, redelivered=bool((self.request.delivery_info or {}).get("redelivered")))
    except TransientError as exc:
        attempts = self.request.retries + 1
        settings = rt.config.worker
        if attempts >= settings.max_attempts:
            fanout.fail_unstarted(rt, request_id, f"gave up after {attempts} attempts: {one_line(exc)}")
            return
        log.warning("request.resolve_retry", request_id=request_id, attempt=attempts, error=one_line(exc))
        raise self.retry(countdown=settings.backoff(attempts), max_retries=settings.max_attempts) from None


@app.task(name="erasure.erase_system", ignore_result=True, **OUTAGE_RETRY)
def erase_system(request_id: str, system: str, *, also: list[str] | None = None) -> None:
    """Erase one system of one request, and of the requests `also` names (a start's group)."""
    passes.erase_system(dispatch.current(), request_id, system, also or ())


@app.task(name="erasure.snapshot_part", ignore_result=True, **OUTAGE_RETRY)
def snapshot_part(part_id: int) -> None:
    """Erase one part of a snapshot pass spread over workers; the last part recorded settles the pass."""
    parts.run_part(dispatch.current(), part_id)


@app.task(name="erasure.tag_mlflow", bind=True, ignore_result=True, **OUTAGE_RETRY)
def tag_mlflow(self: Task, model: str, version: str) -> None:
    """Tag one flagged model version in MLflow; tried again with backoff, then given up with a log."""
    rt = dispatch.current()
    retry_in = mlflow_lineage.tag(rt, model, version, attempt=self.request.retries + 1)
    if retry_in is not None:
        raise self.retry(countdown=retry_in, max_retries=rt.config.worker.max_attempts)


@app.task(name="erasure.reconcile", ignore_result=True)
def reconcile_store() -> None:
    """One reconciliation pass (sent by beat), then the model-flag notices that are due."""
    rt = dispatch.current()
    done = reconcile.reconcile(rt)
    done["notified"] = notify.send_due(rt)
    if any(done.values()):
        log.info("reconcile.done", **done)


@app.task(name="erasure.guard_watch", ignore_result=True)
def guard_watch() -> None:
    """One look of the guard's watch at the snapshot folders (sent by beat, to the snapshot queue)."""
    from worker.engine import guard_watch as watch  # pyarrow: imported by the snapshot workers that take it

    looked = watch.look(dispatch.current())
    if looked.checked or looked.failed:
        log.info("guard.watched", **looked.to_json())


@setup_logging.connect
def _logging(loglevel: Any = "INFO", **_: Any) -> None:
    logs.configure(level=loglevel if isinstance(loglevel, str) else "INFO")


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    dispatch.current().after_fork()
