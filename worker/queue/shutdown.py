"""Graceful shutdown of `erasure worker`. On SIGTERM Celery stops taking messages and waits for
the tasks it runs; this gives them `shutdown_grace_seconds`. Whatever still runs then is handed
back: the systems this process claimed go back to pending (the attempt not counted), every message
it holds unacknowledged goes back to its queue, and the process exits. So a stop never leaves a
claim that only the end of its lease would free, and never a message that only the reconciler finds.
A task thread cannot be stopped from outside: exiting the process is what stops it. The notices
Celery writes straight to the terminal from its signal handlers ("worker: Warm shutdown") are log
events here, so that the log stream holds nothing else."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

import structlog
from celery.apps import worker as celery_worker
from celery.signals import worker_ready, worker_shutting_down
from celery.worker import state

from worker import logs
from worker.engine import claims, fanout
from worker.engine.state import Pending
from worker.queue import dispatch
from worker.runtime import Runtime

log = structlog.get_logger("erasure.shutdown")
_consumer: list[Any] = []  # the worker's Celery consumer, once it is ready
REQUEUE_TRIES = 10  # how often messages kombu could not put back are tried again


def send_again(rt: Runtime, handed: list[Pending]) -> None:
    """Messages for the systems handed back: a pass took some along whose own messages other workers
    have already acknowledged. A broker that refuses leaves them to the reconciler."""
    try:
        fanout.send(rt, handed)
    except Exception as exc:
        log.error("worker.resend_failed", systems=len(handed), error=type(exc).__name__)


def requeue_unacked(consumer: Any) -> None:
    """Put back every message the worker holds unacknowledged. Redis and the embedded broker are
    told here; RabbitMQ puts them back by itself when the connection drops at exit."""
    channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
    restore = getattr(getattr(channel, "qos", None), "restore_unacked", None)
    if restore is None:
        return
    # kombu returns the messages it could not put back instead of raising (the embedded broker's
    # SQLite may be busy with the consumer's own poll): try those again for a while, then say so
    failed = list(restore() or [])
    for _ in range(REQUEUE_TRIES):
        if not failed:
            return
        time.sleep(0.2)
        failed = [(exc, message) for exc, message in (_put_back(channel, m) for _, m in failed) if exc is not None]
    if failed:
        log.error("worker.requeue_failed", messages=len(failed), error=type(failed[0][0]).__name__)


def _put_back(channel: Any, message: Any) -> tuple[BaseException | None, Any]:
    try:
        channel._restore(message)
    except Exception as exc:
        return exc, message
    return None, message


def _watch(grace: float) -> None:
    """Wait for running tasks up to the grace; if some still run, hand everything back and exit."""
    hub = getattr(_consumer[0], "hub", None) if _consumer else None
    if hub is not None:  # wake the event loop: it sees the stop now, not at its next timer (up to 10 s)
        hub.call_soon(lambda: None)
    until = time.monotonic() + grace
    while state.active_requests and time.monotonic() < until:
        time.sleep(0.1)
    running = len(state.active_requests)
    if not running:
        return  # Celery finishes the stop on its own
    try:
        rt = dispatch.current()
        handed_back = claims.hand_back(rt, sorted(rt.held()), "its worker shut down")
    except Exception as exc:  # the store is down: the leases will run out and the reconciler takes over
        log.error("worker.hand_back_failed", error=type(exc).__name__)
        handed_back = []
    send_again(dispatch.current(), handed_back)
    handed = len(handed_back)
    if _consumer:
        requeue_unacked(_consumer[0])
    log.warning("worker.grace_expired", grace_seconds=grace, tasks=running, systems_handed_back=handed)
    logging.shutdown()
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(0)


def say(msg: str, f: Any = None) -> None:
    """Celery's `safe_say`, as a log event written in one go (it runs in signal handlers)."""
    logs.write_now("celery.apps.worker", msg.strip())


celery_worker.safe_say = say


@worker_ready.connect
def _remember(sender: Any = None, **_: Any) -> None:
    _consumer[:] = [sender]


@worker_shutting_down.connect
def _on_shutdown(how: str = "Warm", **_: Any) -> None:
    """Runs in the signal handler: only start the watch. A cold stop (SIGQUIT) is Celery's."""
    if how != "Warm" or any(t.name == "erasure-shutdown" for t in threading.enumerate()):
        return
    grace = dispatch.current().config.worker.shutdown_grace_seconds
    threading.Thread(target=_watch, args=(grace,), name="erasure-shutdown", daemon=True).start()
