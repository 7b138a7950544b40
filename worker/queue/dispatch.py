"""Dispatch through Celery, and the process's runtime: the one the worker's tasks use."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog
from kombu import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from worker.config import Config, config_path, load
from worker.queue import celery_app
from worker.runtime import Runtime

log = structlog.get_logger("erasure.dispatch")
DECLARE_TRIES = 5  # the embedded broker's first-use race passes on the second; more would hide a real fault
DECLARE_PAUSE = 0.05  # seconds before the second try, doubling
_KEPT: list[Connection] = []  # open for the life of the process: see declare_embedded_queues


class CeleryDispatch:
    """Dispatch through the Celery broker, routed by connector kind."""

    def __init__(self, config: Config) -> None:
        celery_app.configure(config)
        if config.broker_url.startswith("sqla+"):
            declare_embedded_queues(config.broker_url)

    def start(self, request_id: str) -> None:
        """Send erasure.start to the intake queue."""
        celery_app.app.send_task("erasure.start", args=[request_id], queue=celery_app.INTAKE_QUEUE)

    def erase(self, request_id: str, system: str, kind: str, countdown: float | None = None,
              also: Sequence[str] = ()) -> None:
        """Send erasure.erase_system to the queue of the system's kind."""
        celery_app.app.send_task("erasure.erase_system", args=[request_id, system],
                                 kwargs={"also": list(also)} if also else {},
                                 queue=celery_app.queue_for(kind), countdown=countdown)

    def part(self, part_id: int, countdown: float | None = None) -> None:
        """Send erasure.snapshot_part to the snapshot queue."""
        celery_app.app.send_task("erasure.snapshot_part", args=[part_id], queue=celery_app.queue_for("snapshot"),
                                 countdown=countdown)

    def tag(self, model: str, version: str) -> None:
        """Send erasure.tag_mlflow to its own queue."""
        celery_app.app.send_task("erasure.tag_mlflow", args=[model, version], queue=celery_app.MLFLOW_QUEUE)


def declare_embedded_queues(broker_url: str) -> None:
    """Make the embedded broker's queue rows before anything is published. kombu's sqla transport
    makes a queue's row on its first use, and two processes doing so at once (a first `erasure
    submit` beside a starting worker) leave one with a unique-constraint error and its pooled
    channel closed: here, on a connection of its own, a try that loses the race tries again and
    finds the row made (the tables too: a first use also creates them, and SQLite may say "locked"
    or "already exists" to the second process). The connections stay open, a lost try's too (its
    session rolled back): closing a kombu sqla connection, or leaving a lost try's to the garbage
    collector, disturbs what the process's other connections share (the embedded worker's beat then
    failed every publish, "channel disconnected", whenever the first try had lost); each is one
    SQLite connection, on the embedded broker alone, at most DECLARE_TRIES."""
    pause = DECLARE_PAUSE
    for attempt in range(1, DECLARE_TRIES + 1):
        connection = Connection(broker_url)
        _KEPT.append(connection)  # a try that lost the race is kept open too: its close would disturb the rest
        channel: Any = None
        try:
            channel = connection.channel()
            for name in celery_app.QUEUES:
                channel.queue_declare(name)
            return
        except (IntegrityError, OperationalError):  # the row, or the tables, made by another at once
            if getattr(channel, "_session", None) is not None:  # kombu's sqla channel's own session
                channel._session.rollback()  # its failed commit's transaction ends now, not when collected
            if attempt == DECLARE_TRIES:
                raise
            log.info("dispatch.declare_retried", attempt=attempt)
            time.sleep(pause)
            pause *= 2


def celery_runtime(config: Config) -> Runtime:
    """A runtime whose messages go through the config's broker."""
    return Runtime(config, CeleryDispatch(config))


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    """Make this the process's runtime (the worker's tasks use it)."""
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The process's runtime; a worker started by Celery directly loads the default config."""
    global _current
    if _current is None:
        _current = celery_runtime(load(config_path()))
    return _current
