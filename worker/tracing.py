"""Traces: with the `otel` extra installed and OTEL_EXPORTER_OTLP_ENDPOINT set, one OpenTelemetry
trace a request, sent over OTLP/HTTP: `erasure.intake` (its root), `erasure.start`, one
`erasure.system` per attempt at each system, and `erasure.settle`. A request's trace id is its id
(a UUID holds the 128 bits of a trace id) and its root span's id is derived from it, so any process
can place a span in the right trace, even for a message that carries no context (the reconciler's,
or a request a pass took along). A message for one request carries the W3C `traceparent` of the
span that sent it in its Celery headers, and the task's spans hang under it. Every log event of a
request gets its `trace_id` (and `span_id`, inside a span). Off, nothing here imports
opentelemetry, and each hook returns at its first line."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from connectors import redact
from connectors.base import Outcome
from worker import config as settings
from worker.store.models import Request, SystemStatus, SystemTask

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from worker.runtime import Runtime

SERVICE = "erasure-worker"  # service.name, unless OTEL_SERVICE_NAME says otherwise
CARRIED = ("erasure.start", "erasure.erase_system")  # the tasks whose first argument is a request id
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_tracer: Any = None  # the Tracer, while tracing is on
_provider: Any = None  # its TracerProvider
_api: Any = None  # opentelemetry.trace, once imported
_unavailable: list[str] = []  # why tracing asked for is off, said once logging is set up
_pinned: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("erasure_root_ids", default=None)
_carried: dict[str, object] = {}  # a running task's id -> the token of the context its message carried
_NOTHING = contextlib.nullcontext()
Erase = Callable[["Runtime", str, Any, dict[str, Any]], dict[str, Any]]


def trace_id(request_id: str) -> int:
    """A request's trace id: its UUID's 128 bits (another id, hashed to as many)."""
    try:
        return uuid.UUID(request_id).int
    except ValueError:
        return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:16], "big") or 1


def root_span_id(request_id: str) -> int:
    """The id of a request's `erasure.intake` span, the root of its trace."""
    return int.from_bytes(hashlib.sha256(f"erasure.intake {request_id}".encode()).digest()[:8], "big") or 1


def use(exporter: SpanExporter) -> None:
    """Trace to this exporter, each span as it ends (tests, or a program that embeds the worker)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    _start(SimpleSpanProcessor(exporter))


def stop() -> None:
    """Tracing off (what is left of it exported first)."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def announce() -> None:
    """Log, once logging is set up, why tracing that was asked for is off."""
    for reason in _unavailable:
        structlog.get_logger("erasure.tracing").warning("tracing.unavailable", reason=reason)
    _unavailable.clear()


def now() -> int:
    """The time a span made afterwards began (0 when tracing is off)."""
    return time.time_ns() if _tracer is not None else 0


def intake(request_id: str) -> contextlib.AbstractContextManager[Any]:
    """The request's root span, `erasure.intake`, around its intake (current inside it)."""
    if _tracer is None:
        return _NOTHING
    from opentelemetry.context import Context

    token = _pinned.set((trace_id(request_id), root_span_id(request_id)))
    try:
        root = _tracer.start_span("erasure.intake", context=Context(), attributes={"erasure.request_id": request_id})
    finally:
        _pinned.reset(token)
    return _current_until_done(root)


def span(name: str, request_id: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A span of the request's trace around a block, current inside it."""
    if _tracer is None:
        return _NOTHING
    return _current_until_done(_tracer.start_span(name, context=_parent(request_id),
                                                  attributes=_named(request_id=request_id, **attributes)))


def note(**attributes: Any) -> None:
    """Add attributes to the current span."""
    if _tracer is not None:
        _api.get_current_span().set_attributes(_named(**attributes))


def erasures(erase: Erase) -> Erase:
    """A pass's erasure (`passes._erase_together`) with one `erasure.system` span for each of its
    requests, each in its request's trace, with the attempt and its outcome."""
    @functools.wraps(erase)
    def traced(rt: Runtime, system: str, connector: Any, subjects: dict[str, Any]) -> dict[str, Any]:
        if _tracer is None or not subjects:
            return erase(rt, system, connector, subjects)
        kind = next((s.kind for s in rt.config.systems if s.name == system), "")
        spans = {request_id: _tracer.start_span("erasure.system", context=_parent(request_id),
                                                attributes=_named(request_id=request_id, system=system, kind=kind))
                 for request_id in subjects}
        try:
            with _current_until_done(next(iter(spans.values())), end=False) if len(spans) == 1 else _NOTHING:
                results = erase(rt, system, connector, subjects)
        except BaseException as exc:
            for each in spans.values():
                _failed(each, type(exc).__name__)
                each.end()
            raise
        attempts = _attempts(rt, system, list(spans))
        for request_id, each in spans.items():
            _outcome(each, results.get(request_id), attempts.get(request_id))
            each.end()
        return results
    return traced


def spread_pass(system: str, kind: str, began: datetime, parts: int, results: Mapping[str, Any],
                attempts: Callable[[], Mapping[str, int]]) -> None:
    """An `erasure.system` span for each request of a pass spread over parts (parts.py), from when it was
    spread until it settled or failed, with how many parts it had, the attempt and the outcome."""
    if _tracer is None or not results:
        return
    start = int((began if began.tzinfo else began.replace(tzinfo=UTC)).timestamp() * 1e9)
    tried = attempts()
    for request_id, result in results.items():
        each = _tracer.start_span("erasure.system", context=_parent(request_id), start_time=start,
                                  attributes=_named(request_id=request_id, system=system, kind=kind, parts=parts))
        _outcome(each, result, tried.get(request_id))
        each.end()


def settled(requests: Sequence[Request], began: int) -> None:
    """An `erasure.settle` span for each request just settled, from `began` until now."""
    if _tracer is None:
        return
    for request in requests:
        failed = sorted(task.system for task in request.systems if task.status == SystemStatus.FAILED)
        done = _tracer.start_span("erasure.settle", context=_parent(request.id), start_time=began or None,
                                  attributes=_named(request_id=request.id, status=str(request.status),
                                                    systems=len(request.systems), failed_systems=failed or None))
        if failed:
            _failed(done, "failed")
        done.end()


def log_fields(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A log event's `trace_id`: its request's (or the current span's); `span_id` inside a span of that trace."""
    if _tracer is None:
        return event
    current = _api.get_current_span()
    context = current.get_span_context()
    request_id = event.get("request_id")
    if isinstance(request_id, str) and request_id:
        wanted = trace_id(request_id)
    elif context.is_valid:
        wanted = context.trace_id
    else:
        return event
    event["trace_id"] = f"{wanted:032x}"
    if current.is_recording() and context.trace_id == wanted:
        event["span_id"] = f"{context.span_id:016x}"
    return event


def _parent(request_id: str) -> Any:
    """The context a span of the request hangs in: the current one if of the request's trace, else its root."""
    current = _api.get_current_span().get_span_context()
    wanted = trace_id(request_id)
    if current.is_valid and current.trace_id == wanted:
        return None
    return _remote(wanted, root_span_id(request_id), 1)


def _remote(trace: int, span_id: int, flags: int) -> Any:
    """A context whose parent is a span of another process."""
    return _api.set_span_in_context(_api.NonRecordingSpan(
        _api.SpanContext(trace, span_id, is_remote=True, trace_flags=_api.TraceFlags(flags))))


@contextlib.contextmanager
def _current_until_done(current: Any, end: bool = True) -> Iterator[Any]:
    """The span current for the block, failed by an exception (its type only: a message may carry a
    value), ended after it unless `end` is false."""
    try:
        with _api.use_span(current, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield current
    except BaseException as exc:
        _failed(current, type(exc).__name__)
        raise
    finally:
        if end:
            current.end()


def _named(**attributes: Any) -> dict[str, Any]:
    return {f"erasure.{key}": value for key, value in attributes.items() if value is not None}


def _failed(failed: Any, why: str) -> None:
    from opentelemetry.trace import StatusCode

    failed.set_status(StatusCode.ERROR, why)


def _outcome(erasure: Any, result: Any, attempt: int | None) -> None:
    """An `erasure.system` span's attempt and outcome (a `passes` result: an Outcome, or a failure)."""
    if attempt is not None:
        erasure.set_attribute("erasure.attempt", attempt)
    if isinstance(result, Outcome):
        outcome = "exempt" if result.exempt_reason else "erased" if result.items_erased else "not_found"
        erasure.set_attributes(_named(outcome=outcome, items=result.items_erased))
    elif result is not None:
        erasure.set_attributes(_named(outcome="failed", error=redact.scrub(str(result.error)),
                                      transient=bool(result.transient)))
        _failed(erasure, "failed")


def _attempts(rt: Runtime, system: str, request_ids: list[str]) -> dict[str, int]:
    """Which attempt at the system each request's pass was (nothing, if the store does not answer)."""
    try:
        with rt.engine.connect() as conn:
            return {r: n for r, n in conn.execute(select(SystemTask.request_id, SystemTask.attempts).where(
                SystemTask.system == system, SystemTask.request_id.in_(request_ids)))}
    except SQLAlchemyError:
        return {}


def _publishing(sender: Any = None, body: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A message for one request carries the span that sends it, when that span is of the request's trace."""
    if _tracer is None or sender not in CARRIED or headers is None:
        return
    args = body[0] if isinstance(body, tuple | list) and body else None
    request_id = args[0] if isinstance(args, list | tuple) and args and isinstance(args[0], str) else None
    current = _api.get_current_span().get_span_context()
    if request_id and current.is_valid and current.trace_id == trace_id(request_id):
        headers["traceparent"] = f"00-{current.trace_id:032x}-{current.span_id:016x}-{int(current.trace_flags):02x}"


def _received(task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    """A task for one request runs in the context its message carried (one of another trace is ignored)."""
    if _tracer is None or task is None or task.name not in CARRIED or not args or not isinstance(args[0], str):
        return
    carried = TRACEPARENT.fullmatch(str(getattr(task.request, "traceparent", None) or ""))
    if carried is None or int(carried[1], 16) != trace_id(args[0]) or not int(carried[2], 16):
        return
    from opentelemetry import context

    _carried[task_id] = context.attach(_remote(int(carried[1], 16), int(carried[2], 16), int(carried[3], 16)))


def _finished(task_id: str = "", **_: Any) -> None:
    """The carried context let go when its task ends."""
    token = _carried.pop(task_id, None)
    if token is not None:
        from opentelemetry import context

        context.detach(token)  # type: ignore[arg-type]


def _start(processor: Any, global_provider: bool = False) -> None:
    """Tracing on: spans through this processor, the Celery hooks connected."""
    global _tracer, _api, _provider
    from celery.signals import before_task_publish, task_postrun, task_prerun
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RequestIds(RandomIdGenerator):
        """Random ids, except those pinned for a request's root span."""

        def generate_span_id(self) -> int:
            pinned = _pinned.get()
            return pinned[1] if pinned else super().generate_span_id()

        def generate_trace_id(self) -> int:
            pinned = _pinned.get()
            return pinned[0] if pinned else super().generate_trace_id()

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
    provider = TracerProvider(resource=resource, id_generator=RequestIds())
    provider.add_span_processor(processor)
    if global_provider:  # other instrumentation a deployment adds joins the same traces
        trace.set_tracer_provider(provider)
    _api, _tracer, _provider = trace, provider.get_tracer(SERVICE), provider
    before_task_publish.connect(_publishing, weak=False, dispatch_uid="erasure.tracing.publish")
    task_prerun.connect(_received, weak=False, dispatch_uid="erasure.tracing.prerun")
    task_postrun.connect(_finished, weak=False, dispatch_uid="erasure.tracing.postrun")


def _from_environment() -> None:
    """Tracing on if OTEL_EXPORTER_OTLP_ENDPOINT is set and the `otel` extra is installed."""
    if not settings.otlp_endpoint():
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        _unavailable.append("OTEL_EXPORTER_OTLP_ENDPOINT is set, but the otel extra is not installed "
                            "(pip install 'erasure-worker[otel]'): no traces")
        return
    _start(BatchSpanProcessor(OTLPSpanExporter()), global_provider=True)


_from_environment()
