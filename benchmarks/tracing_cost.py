"""What tracing costs: the pipeline with OTEL_EXPORTER_OTLP_ENDPOINT unset (off) and set (on).

    python benchmarks/tracing_cost.py [--requests 300] [--rounds 5] [--embedded-requests 0]

1. In-process pipeline, off against on: each round is a fresh process (so that off is off from
   its first import, as in production) that takes --requests requests through intake, start and
   three stub systems (no I/O) on a SQLite store (on /dev/shm, so that the disk's fsyncs do not
   drown what is measured), messages played at once, JSON logs rendered to /dev/null. On, its
   spans go through the SDK's batch processor and OTLP/HTTP exporter to a collector this script
   runs on a loopback port (it answers and counts, as a real one would).
   Rounds alternate off and on; shown are the median wall and CPU ms a request (CPU of all the
   process's threads, the exporter's included: less swayed by a busy machine) and on/off, with the
   spread of the off rounds beside them: the noise a difference must beat to be measured.
2. Off, what the hooks cost: each no-op hook timed alone, times the calls one request makes,
   against the off round's time a request; an upper bound of what tracing adds when it is off.
3. With --embedded-requests N: benchmarks/pipeline.py's embedded run (a real `erasure worker`,
   SQLite store and broker), off then on, N requests each.

Figures only; nothing is asserted. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SYSTEMS = ("billing", "crm", "tickets")
BENCH_KEY = "erasure-benchmark-key-not-secret-0123456789"
CONFIG = """store_url = "sqlite:///{folder}/state.db"
broker_url = "sqla+sqlite:///{folder}/queue.db"
[identifiers]
user_id = {{ pattern = '^[0-9]{{1,18}}$' }}
""" + "".join(f'[[systems]]\nname = "{name}"\nkind = "stub"\nuses = ["user_id"]\n' for name in SYSTEMS)
# a request's calls of each hook when tracing is off (a start message's span is the worker's, not played here)
CALLS = {"intake + note": 1, "span (erasure.start)": 1, "erasures wrapper": len(SYSTEMS), "now + settled": len(SYSTEMS),
         "log_fields": 0}  # log_fields: counted by the run


class Collector:
    """An OTLP/HTTP endpoint that answers every export and counts the bytes."""

    def __init__(self) -> None:
        self.posts = self.size = 0
        seen = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                seen.size += len(self.rfile.read(int(self.headers["Content-Length"])))
                seen.posts += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def child(folder: Path, requests: int) -> None:
    """One round, in this process: the requests through the pipeline; prints seconds and counts as JSON."""
    import structlog

    from worker import logs, tracing
    from worker.config import load
    from worker.engine import fanout, intake, passes
    from worker.runtime import Runtime

    class Kept:
        """Messages kept, to be played at once."""

        def __init__(self) -> None:
            self.sent: list[tuple[str, str | None, tuple[str, ...]]] = []

        def start(self, request_id: str) -> None:
            self.sent.append((request_id, None, ()))

        def erase(self, request_id: str, system: str, kind: str, countdown: float | None = None,
                  also: Any = ()) -> None:
            self.sent.append((request_id, system, tuple(also)))

        def tag(self, model: str, version: str) -> None:
            pass

    counted = [0]

    def count(_logger: Any, _name: str, event: Any) -> Any:
        counted[0] += 1
        return event

    logs.configure(level="INFO", fmt="json")
    structlog.configure(processors=[count, *structlog.get_config()["processors"]])  # the events, counted
    real_stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115 - the rendered lines, dropped
    rt = Runtime(load(folder / "erasure.toml"), Kept())  # type: ignore[arg-type]
    rt.engine  # noqa: B018 - migrated before the clock starts
    counted[0] = 0
    began, cpu = time.perf_counter(), time.process_time()
    for n in range(requests):
        intake.submit(rt, {"user_id": str(1_000_000 + n)})
        while rt.dispatch.sent:  # type: ignore[attr-defined]
            request_id, system, also = rt.dispatch.sent.pop(0)  # type: ignore[attr-defined]
            if system is None:
                with tracing.span("erasure.start", request_id):  # as the worker's start task does
                    fanout.start(rt, request_id)
            else:
                passes.erase_system(rt, request_id, system, also)
    if tracing._provider is not None:
        tracing._provider.force_flush()  # the export is part of the cost
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    sys.stderr = real_stderr
    rt.close()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "requests": requests, "events": counted[0],
                      "traced": "opentelemetry" in sys.modules}))


def round_(requests: int, on: str | None) -> dict[str, Any]:
    """One round in a fresh process, tracing on (to this endpoint) or off."""
    # in memory where there is a tmpfs: the store's fsyncs would drown what is measured
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    folder = Path(tempfile.mkdtemp(prefix="erasure-tracing-bench-", dir=shm))
    (folder / "erasure.toml").write_text(CONFIG.format(folder=folder))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(ERASURE_SECRET_KEY=BENCH_KEY, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if on:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = on
    done = subprocess.run([sys.executable, __file__, "--child", str(folder), "--requests", str(requests)],
                          capture_output=True, text=True, timeout=900, env=env)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def hook_costs() -> dict[str, float]:
    """Seconds one call of each hook takes with tracing off."""
    from worker import tracing

    assert tracing._tracer is None, "run with OTEL_EXPORTER_OTLP_ENDPOINT unset"

    def raw(rt: Any, system: str, connector: Any, subjects: Any) -> Any:
        return subjects

    def intake() -> None:
        with tracing.intake("x"):
            tracing.note(request_id="x", duplicate=False)

    wrapped: Any = tracing.erasures(raw)
    event = {"event": "system.erased", "request_id": "x"}
    costs = {
        "intake + note": intake,
        "span (erasure.start)": lambda: tracing.span("erasure.start", "x", attempt=1).__enter__(),
        "erasures wrapper": lambda: wrapped(None, "crm", None, {"x": 1}),
        "now + settled": lambda: tracing.settled([], tracing.now()),
        "log_fields": lambda: tracing.log_fields(None, "info", event),
    }
    found = {}
    for name, call in costs.items():
        number = 200_000
        found[name] = min(timeit.repeat(call, number=number, repeat=5)) / number
    base = min(timeit.repeat(lambda: raw(None, "crm", None, {"x": 1}), number=200_000, repeat=5)) / 200_000
    found["erasures wrapper"] = max(0.0, found["erasures wrapper"] - base)  # what the wrapper adds to the call
    return found


def embedded(requests: int, collector: Collector) -> None:
    """benchmarks/pipeline.py's embedded run, off then on."""
    sys.path.insert(0, str(Path(__file__).parent))
    import pipeline  # type: ignore[import-not-found]

    args = argparse.Namespace(embedded_requests=requests, publishers=4, stall=60.0)
    os.environ.update({"ERASURE_SECRET_KEY": BENCH_KEY, "ERASURE_LOG_FORMAT": "json"})
    for mode, value in (("off", None), ("on", collector.url)):
        posts = collector.posts
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        if value:
            os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = value
        run = pipeline.embedded_run(args, Path(tempfile.mkdtemp(prefix=f"erasure-tracing-embedded-{mode}-")))
        print(f"embedded worker, tracing {mode}: {run.rate:.1f} requests/s, p50 "
              f"{pipeline.percentile(run.latencies, 50):.2f} s, worker CPU "
              f"{run.worker_cpu * 1000 / max(run.done, 1):.1f} ms a request, lost {run.lost}, failed {run.failed}, "
              f"{collector.posts - posts} OTLP posts",
              flush=True)
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)


def in_process(args: argparse.Namespace, collector: Collector) -> list[dict[str, Any]]:
    """Rounds off and on, alternating; the figures; the off rounds."""
    off: list[dict[str, Any]] = []
    on: list[dict[str, Any]] = []
    for n in range(args.rounds):
        for mode, kept in (("off", off), ("on", on)) if n % 2 == 0 else (("on", on), ("off", off)):
            got = round_(args.requests, collector.url if mode == "on" else None)
            assert got["traced"] == (mode == "on"), got
            kept.append(got)
            print(f"  round {n + 1} {mode}: {got['seconds'] * 1000 / got['requests']:.2f} ms a request, "
                  f"CPU {got['cpu'] * 1000 / got['requests']:.2f} ms", flush=True)
    print(f"in-process pipeline, {args.requests} requests a round, {args.rounds} rounds each "
          f"(3 stub systems, SQLite store), {collector.posts} OTLP posts, {collector.size / 1024:.0f} KiB:")
    for unit, key in (("ms a request", "seconds"), ("CPU ms a request (all threads)", "cpu")):
        off_ms = [r[key] * 1000 / r["requests"] for r in off]
        on_ms = [r[key] * 1000 / r["requests"] for r in on]
        print(f"  {unit}: off median {statistics.median(off_ms):.2f} (rounds {min(off_ms):.2f}-{max(off_ms):.2f}), "
              f"on median {statistics.median(on_ms):.2f} (rounds {min(on_ms):.2f}-{max(on_ms):.2f}); "
              f"on / off {statistics.median(on_ms) / statistics.median(off_ms):.3f}, "
              f"off rounds' spread {(max(off_ms) - min(off_ms)) / statistics.median(off_ms):.1%}")
    return off


def print_hooks(off: list[dict[str, Any]]) -> None:
    """What the off path's hooks add to a request, against the off rounds' CPU a request."""
    events = statistics.median(r["events"] / r["requests"] for r in off)
    cpu = statistics.median(r["cpu"] / r["requests"] for r in off)
    costs = hook_costs()
    calls = {**CALLS, "log_fields": events}
    total = sum(costs[name] * calls[name] for name in costs)
    print(f"off, the hooks a request calls (in this process, tracing off; {events:.0f} log events a request):")
    for name, seconds in costs.items():
        print(f"  {name}: {seconds * 1e9:.0f} ns a call x {calls[name]:.0f}")
    print(f"  in all {total * 1e6:.2f} us a request = {total / cpu:.3%} of the off median CPU a request")


def main() -> None:
    """Rounds off and on, the hooks' cost, figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests a round (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each, off and on, alternating (default 5)")
    parser.add_argument("--embedded-requests", type=int, default=0, help="also pipeline.py's embedded run, "
                        "off then on, with this many requests (default 0: skipped)")
    parser.add_argument("--child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), args.requests)
        return
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    collector = Collector()
    print_hooks(in_process(args, collector))
    if args.embedded_requests:
        embedded(args.embedded_requests, collector)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    collector.server.shutdown()


if __name__ == "__main__":
    main()
