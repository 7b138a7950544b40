"""Dispatch through Celery, and the process's runtime: the one the worker's tasks use."""

from __future__ import annotations

from collections.abc import Sequence

from worker.config import Config, config_path, load
from worker.queue import celery_app
from worker.runtime import Runtime


class CeleryDispatch:
    """Dispatch through the Celery broker, routed by connector kind."""

    def __init__(self, config: Config) -> None:
        celery_app.configure(config)

    def start(self, request_id: str) -> None:
        """Send erasure.start to the intake queue."""
        celery_app.app.send_task("erasure.start", args=[request_id], queue=celery_app.INTAKE_QUEUE)

    def erase(self, request_id: str, system: str, kind: str, countdown: float | None = None,
              also: Sequence[str] = ()) -> None:
        """Send erasure.erase_system to the queue of the system's kind."""
        celery_app.app.send_task("erasure.erase_system", args=[request_id, system],
                                 kwargs={"also": list(also)} if also else {},
                                 queue=celery_app.queue_for(kind), countdown=countdown)

    def tag(self, model: str, version: str) -> None:
        """Send erasure.tag_mlflow to its own queue."""
        celery_app.app.send_task("erasure.tag_mlflow", args=[model, version], queue=celery_app.MLFLOW_QUEUE)


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
