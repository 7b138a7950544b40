"""Traces: one a request, whose id is the request's, across this test's process (the SDK's in-memory
exporter) and a real `erasure worker` process (its own OTLP/HTTP exporter, sending to a collector this
test runs on a loopback port); the request's log events carry its trace id; off, nothing imports
opentelemetry."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from sqlalchemy import select  # noqa: E402

from tests.helpers import (  # noqa: E402
    MakeRuntime,
    WorkerProcess,
    drain,
    snapshot_system,
    stub,
    wait_for,
    write_config,
    write_snapshot,
)
from worker import tracing  # noqa: E402
from worker.config import load  # noqa: E402
from worker.engine import intake  # noqa: E402
from worker.queue.dispatch import celery_runtime  # noqa: E402
from worker.store.models import Request  # noqa: E402

Span = dict[str, Any]  # name, trace_id, span_id, parent (hex; "" for none), attributes, error, service


class Collector:
    """An OTLP/HTTP receiver on a loopback port: the spans posted to /v1/traces, as dicts."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received.extend(_spans(ExportTraceServiceRequest.FromString(body)))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, request_id: str) -> list[Span]:
        """The spans received in one request's trace."""
        return [s for s in list(self.spans) if s["trace_id"] == uuid.UUID(request_id).hex]


def _spans(request: ExportTraceServiceRequest) -> Iterator[Span]:
    for resource in request.resource_spans:
        service = {a.key: a.value.string_value for a in resource.resource.attributes}.get("service.name")
        for scope in resource.scope_spans:
            for one in scope.spans:
                yield {"name": one.name, "trace_id": one.trace_id.hex(), "span_id": one.span_id.hex(),
                       "parent": one.parent_span_id.hex(), "error": one.status.code == 2, "service": service,
                       "attributes": {a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                                      for a in one.attributes}}


def _in_memory(exporter: InMemorySpanExporter) -> list[Span]:
    """The spans this process made, as the collector's dicts."""
    return [{"name": s.name, "trace_id": f"{s.context.trace_id:032x}", "span_id": f"{s.context.span_id:016x}",
             "parent": f"{s.parent.span_id:016x}" if s.parent else "", "attributes": dict(s.attributes or {})}
            for s in exporter.get_finished_spans()]


@pytest.fixture
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, to an in-memory exporter; off again afterwards."""
    exporter = InMemorySpanExporter()
    tracing.use(exporter)
    yield exporter
    tracing.stop()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """The OTLP/HTTP collector worker processes export to."""
    running = Collector()
    yield running
    running.server.shutdown()


def test_a_request_is_one_trace_across_a_worker_process(tmp_path: Path, traced: InMemorySpanExporter,
                                                         collector: Collector, json_logs: Callable[[], list[Any]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake here and the start, each attempt at each system and the settling in a worker process
    make one trace, its id the request's, each span under the one whose message started its task."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # exported within a tenth of a second
    config = write_config(tmp_path, stub("billing", items=2) + stub("crm", fail_transiently=1))
    worker = WorkerProcess(config, tmp_path / "worker.log")
    rt = celery_runtime(load(config))
    try:
        worker.ready()
        request_id = intake.submit(rt, {"user_id": "42"}).request_id

        def completed() -> bool:
            with rt.transaction() as session:
                return session.scalar(select(Request.status).where(Request.id == request_id)) == "completed"

        wait_for("the request to complete", completed, alive=worker)
        wait_for("the settle span", lambda: any(s["name"] == "erasure.settle" for s in collector.of(request_id)),
                 timeout=30, alive=worker)
    finally:
        worker.signal(signal.SIGTERM)
        worker.wait()
        rt.close()

    trace = uuid.UUID(request_id).hex
    (root,) = _in_memory(traced)
    assert (root["name"], root["trace_id"], root["parent"]) == ("erasure.intake", trace, "")
    assert root["span_id"] == f"{tracing.root_span_id(request_id):016x}"
    spans = collector.of(request_id)
    assert {s["service"] for s in spans} == {"erasure-worker"}
    (start,) = [s for s in spans if s["name"] == "erasure.start"]
    assert start["parent"] == root["span_id"]
    erasures = sorted((s["attributes"]["erasure.system"], s["attributes"]["erasure.attempt"], s) for s in spans
                      if s["name"] == "erasure.system")
    assert [(system, attempt) for system, attempt, _ in erasures] == [("billing", 1), ("crm", 1), ("crm", 2)]
    billing, crm_failed, crm = (s for _, _, s in erasures)
    for erased in (billing, crm):
        assert erased["attributes"].items() >= {"erasure.kind": "stub", "erasure.outcome": "erased"}.items()
    assert (billing["attributes"]["erasure.items"], crm["attributes"]["erasure.items"]) == (2, 1)
    assert crm_failed["error"] and crm_failed["attributes"]["erasure.outcome"] == "failed"
    assert crm_failed["attributes"]["erasure.error"] == "stub crm is briefly unavailable"
    # each erase message carried the start span in its headers (the retry is sent from a task run in that context)
    assert {s["parent"] for _, _, s in erasures} == {start["span_id"]}
    (settle,) = [s for s in spans if s["name"] == "erasure.settle"]
    assert settle["attributes"]["erasure.status"] == "completed"
    assert not any(s["trace_id"] != trace for s in collector.spans if s["attributes"].get("erasure.request_id")
                   == request_id)

    here = [e for e in json_logs() if e.get("request_id") == request_id]
    there = [e for e in worker.events() if e.get("request_id") == request_id]
    assert here and there and all(e.get("trace_id") == trace for e in here + there), here + there
    inside = {e["span_id"] for e in here + there if "span_id" in e}
    assert root["span_id"] in inside and start["span_id"] in inside
    assert inside <= {s["span_id"] for s in [root, *spans]}


def test_requests_erased_together_keep_a_trace_each(make_runtime: MakeRuntime,
                                                    traced: InMemorySpanExporter) -> None:
    """A pass that erases several requests at once (and a start that takes others along) makes each
    request's spans in its own trace, under its own root."""
    rt = make_runtime(stub("snap", batches=True) + stub("crm"))
    ids = [intake.submit(rt, {"user_id": str(n)}).request_id for n in (7, 8, 9)]
    drain(rt)
    spans = _in_memory(traced)
    for request_id in ids:
        mine = [s for s in spans if s["trace_id"] == uuid.UUID(request_id).hex]
        assert sorted(s["name"] for s in mine) == ["erasure.intake", "erasure.settle", "erasure.system",
                                                   "erasure.system"]
        assert {s["attributes"]["erasure.request_id"] for s in mine} == {request_id}
        assert {s["parent"] for s in mine if s["name"] != "erasure.intake"} == {
            f"{tracing.root_span_id(request_id):016x}"}
    assert len(spans) == 4 * len(ids)


def test_a_pass_spread_over_parts_is_an_erasure_system_span_a_request(make_runtime: MakeRuntime, tmp_path: Path,
                                                                       traced: InMemorySpanExporter) -> None:
    """A snapshot pass spread over three parts (a file each) makes one `erasure.system` span for each of its
    requests, in the request's trace, from the spread to the settling, with the parts, the attempt and the
    outcome (before, a spread pass made none: its requests' traces showed no attempt at the system)."""
    for i, users in enumerate(([7, 100], [8, 101], [7, 8, 102])):
        write_snapshot(tmp_path / "lake" / "2026-10-01" / f"part-{i}.parquet", users)
    rt = make_runtime(snapshot_system(tmp_path / "lake"), worker={"batch_wait_seconds": 0, "snapshot_part_mb": 0})
    ids = [intake.submit(rt, {"user_id": str(n)}).request_id for n in (7, 8)]
    drain(rt)
    spans = [s for s in traced.get_finished_spans() if s.name == "erasure.system"]
    assert sorted((s.attributes or {})["erasure.request_id"] for s in spans) == sorted(ids)
    for span in spans:
        request_id = (span.attributes or {})["erasure.request_id"]
        assert f"{span.context.trace_id:032x}" == uuid.UUID(str(request_id)).hex
        assert span.parent is not None and span.parent.span_id == tracing.root_span_id(str(request_id))
        assert {k: (span.attributes or {})[k] for k in ("erasure.system", "erasure.kind", "erasure.parts",
                                                         "erasure.attempt", "erasure.outcome", "erasure.items")} \
            == {"erasure.system": "clickstream", "erasure.kind": "snapshot", "erasure.parts": 3,
                "erasure.attempt": 1, "erasure.outcome": "erased", "erasure.items": 2}
        assert span.start_time is not None and span.end_time is not None and span.start_time <= span.end_time


def test_a_refused_submit_is_a_failed_intake_span(make_runtime: MakeRuntime, traced: InMemorySpanExporter) -> None:
    """Bad input ends its intake span failed, naming the error's type, never the value."""
    rt = make_runtime(stub("crm"))
    with pytest.raises(intake.InputError):
        intake.submit(rt, {"user_id": "not-a-number-4711"})
    (span,) = traced.get_finished_spans()
    assert span.name == "erasure.intake" and span.status.description == "InputError"
    assert "4711" not in json.dumps({**dict(span.attributes or {}), "events": [e.name for e in span.events]})


def test_off_no_module_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT unset, a process that imports the worker's every task and the
    CLI and takes a request through does not import opentelemetry, and its log events carry no trace id."""
    config = write_config(tmp_path, stub("crm"))
    script = f"""
import json, sys
from pathlib import Path
from worker import logs
from worker.config import load
from worker.engine import fanout, intake, passes
from worker.queue import tasks  # noqa: F401 - every task, and the Celery hooks
from worker.runtime import Runtime
from worker.surfaces import cli  # noqa: F401

class Kept:  # messages played at once (tests.helpers is not imported: redis, which it imports, looks for OpenTelemetry)
    def __init__(self): self.sent = []
    def start(self, request_id): self.sent.append((request_id, None, ()))
    def erase(self, request_id, system, kind, countdown=None, also=()): self.sent.append((request_id, system, also))

logs.configure(fmt="json")
rt = Runtime(load(Path({str(config)!r})), Kept())
intake.submit(rt, {{"user_id": "42"}})
while rt.dispatch.sent:
    request_id, system, also = rt.dispatch.sent.pop(0)
    fanout.start(rt, request_id) if system is None else passes.erase_system(rt, request_id, system, also)
print(json.dumps(sorted(name for name in sys.modules if name.startswith("opentelemetry"))))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "request.completed" for e in events)
    assert not any("trace_id" in e or "span_id" in e for e in events)


@pytest.mark.parametrize("own_trace", [True, False], ids=["its-own-trace", "another-trace"])
def test_a_task_runs_under_its_messages_span_only_if_of_its_request(traced: InMemorySpanExporter,
                                                                    own_trace: bool) -> None:
    """A task's spans hang under the span its message carried when that span is of the task's request's
    trace; a traceparent of another trace is ignored (the request's root instead)."""
    from celery.signals import task_postrun, task_prerun

    from worker.queue.tasks import start

    request_id, sender = str(uuid.uuid4()), "ab" * 8
    carried = uuid.UUID(request_id).hex if own_trace else uuid.uuid4().hex
    start.push_request(traceparent=f"00-{carried}-{sender}-01")
    try:
        task_prerun.send(sender=start, task_id="t-1", task=start, args=[request_id], kwargs={})
        with tracing.span("erasure.start", request_id):
            pass
        task_postrun.send(sender=start, task_id="t-1", task=start, args=[request_id], kwargs={}, retval=None,
                          state="SUCCESS")
    finally:
        start.pop_request()
    (span,) = traced.get_finished_spans()
    assert span.context.trace_id == uuid.UUID(request_id).int and span.parent is not None
    assert span.parent.span_id == (int(sender, 16) if own_trace else tracing.root_span_id(request_id))


def test_with_the_endpoint_but_not_the_extra_it_says_so_and_runs() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set without the extra installed: one `tracing.unavailable` event
    once logging is set up, and no tracing."""
    script = """
import sys
sys.modules["opentelemetry.exporter.otlp.proto.http.trace_exporter"] = None  # as if the extra were not installed
from worker import logs, tracing
logs.configure(fmt="json")
print(tracing.now())
"""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert [json.loads(line)["event"] for line in done.stderr.splitlines()] == ["tracing.unavailable"]
