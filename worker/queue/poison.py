"""Poison on the queues: a message no task of this worker can run (not JSON, the wrong shape,
arguments that do not fit the task, an unknown task name) is logged with its reason, set aside in
`erasure.dead` with that reason in its headers, and acknowledged; the worker goes on. Left to
Celery, some would be dropped silently, some logged with their body (which may carry identifiers),
and a body of the wrong shape would stop the worker, then every worker it is redelivered to.

A well-formed `erasure.submit` whose fields are wrong is its task's to drop (`intake.dropped`):
the contract says so, and no identifier is kept in a queue."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from celery.worker.consumer import Consumer
from kombu.message import Message
from vine import promise

from worker.queue import celery_app

log = structlog.get_logger("erasure.poison")
ACCEPTED = "application/json"
PLAIN = re.compile(r"[A-Za-z0-9_.:+/-]{1,100}")
CHAINING = ("callbacks", "errbacks", "chain", "chord")  # our messages never carry more tasks
LONGEST_ARGUMENT = 300  # characters in a string argument: request ids, system and model names
LONGEST_LIST = 1000  # strings in a list argument: the requests one erase message stands for


def shown(value: Any) -> str:
    """A name taken from a message, fit for a log: itself if it is a plain name, else a placeholder."""
    return value if isinstance(value, str) and PLAIN.fullmatch(value) else "(not a plain name)"


def problem(message: Message, tasks: Mapping[str, Any]) -> str | None:
    """Why no task of this worker can run the message; None if one can."""
    if message.content_type != ACCEPTED:
        return f"content type {shown(message.content_type)} is not accepted (JSON only)"
    body = message.body.tobytes() if isinstance(message.body, memoryview) else message.body
    try:
        decoded = json.loads(body)
    except (ValueError, TypeError):
        return "the body is not JSON"
    headers = message.headers if isinstance(message.headers, dict) else {}
    if "task" in headers:  # protocol 2: [args, kwargs, options]
        if not (isinstance(decoded, list) and len(decoded) == 3):
            return "the body is not [args, kwargs, options]"
        name, (args, kwargs, options) = headers["task"], decoded
    elif isinstance(decoded, dict):  # protocol 1: one object
        name, args, kwargs, options = decoded.get("task"), decoded.get("args", []), decoded.get("kwargs", {}), decoded
    else:
        return "not a Celery task message"
    if name is None:
        return "not a Celery task message (no task name)"
    if not isinstance(name, str) or not name.startswith("erasure.") or name not in tasks:
        return f"unknown task {shown(name)}"
    if not (isinstance(args, list) and isinstance(kwargs, dict) and isinstance(options, dict)):
        return f"{name}: the arguments are not a list and an object"
    if any(options.get(key) for key in CHAINING):
        return f"{name}: callbacks and chains are not accepted"
    return _misfit(name, tasks[name].run, args, kwargs)


def _misfit(name: str, run: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Whether the arguments fit the task's parameters, a `str` parameter taking a short string."""
    parameters = inspect.signature(run).parameters
    try:
        bound = inspect.signature(run).bind(*args, **kwargs)
    except TypeError:
        return f"{name}: the arguments do not fit ({', '.join(parameters)})"
    for key, value in bound.arguments.items():
        if parameters[key].annotation in (str, "str") and not _short(value):
            return f"{name}: {key} must be a string of 1 to {LONGEST_ARGUMENT} characters"
        if parameters[key].annotation == "list[str] | None" and not (value is None or (
                isinstance(value, list) and len(value) <= LONGEST_LIST and all(map(_short, value)))):
            return f"{name}: {key} must be a list of at most {LONGEST_LIST} strings of 1 to {LONGEST_ARGUMENT} " \
                   "characters"
    return None


def _short(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= LONGEST_ARGUMENT


class GuardedConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with poison set aside before Celery's own handling sees it."""

    def create_task_handler(self, promise: Any = promise) -> Callable[[Message], None]:
        """Celery's handler for task messages, behind the check."""
        handle = super().create_task_handler(promise)

        def on_task_received(message: Message) -> None:
            reason = problem(message, self.app.tasks)
            if reason is None:
                try:
                    return handle(message)  # type: ignore[no-any-return]
                except self.connection_errors:
                    raise
                except Exception as exc:  # a message Celery cannot take must not stop the worker
                    if message.acknowledged:
                        log.error("message.unhandled", error=type(exc).__name__)
                        return None
                    reason = f"Celery cannot take it ({type(exc).__name__})"
            self.set_aside(message, reason)
            return None

        return on_task_received

    def set_aside(self, message: Message, reason: str) -> None:
        """Log why, publish the message as it came to `erasure.dead`, then acknowledge it."""
        headers = message.headers if isinstance(message.headers, dict) else {}
        queue = (message.delivery_info or {}).get("routing_key")
        task = headers.get("task")
        log.warning("message.dead_lettered", queue=shown(queue), task=None if task is None else shown(task),
                    reason=reason)
        dead = celery_app.dead_letter_queue()
        with self.app.producer_or_acquire() as producer:
            producer.publish(
                message.body, exchange=dead.exchange, routing_key=dead.routing_key, declare=[dead],
                content_type=message.content_type or "application/octet-stream",
                content_encoding=message.content_encoding or "binary",
                headers={**headers, "x-erasure-reason": reason, "x-erasure-queue": queue},
                delivery_mode=2, retry=True, retry_policy={"max_retries": 3},
            )
        message.ack()

    # Celery's own handlers log the body; after the check they are reached only by oddities
    def on_unknown_message(self, body: Any, message: Message) -> None:
        """Set aside a message with no task name."""
        self.set_aside(message, "not a Celery task message")

    def on_unknown_task(self, body: Any, message: Message, exc: Exception) -> None:
        """Set aside a message for a task this worker does not have."""
        self.set_aside(message, "unknown task")

    def on_invalid_task(self, body: Any, message: Message, exc: Exception) -> None:
        """Set aside a task message Celery finds invalid (a bad eta, say)."""
        self.set_aside(message, f"an invalid task message ({type(exc).__name__})")

    def on_decode_error(self, message: Message, exc: Exception) -> None:
        """Set aside a message whose body cannot be decoded."""
        self.set_aside(message, "the body cannot be decoded")
