"""Logging: structlog events with fields, JSON lines when not on a terminal (or when
ERASURE_LOG_FORMAT=json), readable lines otherwise. Whatever else a process would write to its
log stream goes through the same processors, so that with JSON every line is one object with
`event`, `level`, `logger` and `timestamp`: the stdlib's records (Celery, kombu, uvicorn, whose
access lines become fields with the query string left out), Python's warnings, uncaught
exceptions (their traceback as the field `exception`, scrubbed as every field is), and the
notices Celery writes from its signal handlers (`write_now`). Logs go to stderr so stdout stays
for command output."""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, TextIO

import structlog

from connectors import redact
from worker import config as settings
from worker import tracing


def access_fields(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """uvicorn's access line as fields, its path without the query string (which may carry values);
    no other record's arguments are kept (Celery's carry a task's arguments)."""
    args = event.pop("positional_args", None)
    record = event.get("_record")
    if record is None or record.name != "uvicorn.access" or not isinstance(args, tuple) or len(args) != 5:
        return event
    client, method, path, http_version, status = args
    event.update(event="http.request", method=method, path=str(path).split("?", 1)[0], status=status,
                 client=client, http_version=http_version)
    return event


SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    tracing.log_fields,  # a request's trace id, when tracing is on
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
_handler: list[logging.Handler] = []  # the root logger's, once configured


def configure(level: str = "INFO", fmt: str | None = None) -> None:
    """Set up structlog, the stdlib root logger, warnings and uncaught exceptions once for this process."""
    fmt = fmt or settings.log_format() or ("console" if sys.stderr.isatty() else "json")
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*SHARED, access_fields],
        pass_foreign_args=True,  # for access_fields, which drops them
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # a traceback as text, so that redact scrubs it too
            redact.processor,
            renderer,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _handler[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "alembic", "amqp", "kombu", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    warnings.showwarning = _show_warning
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread
    tracing.announce()


def write_now(logger: str, event: str, level: int = logging.INFO) -> None:
    """Log one event with a single write to stderr's descriptor: safe in a signal handler, where the
    logging locks and the buffered stream may be held by the code the signal interrupted."""
    record = logging.LogRecord(logger, level, __file__, 0, event, None, None)
    text = _handler[0].format(record) if _handler else event
    try:
        os.write(2, f"{text}\n".encode())
    except OSError:
        pass  # a notice lost must never stop a shutdown


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """A Python warning as the event `python.warning` (what logging.captureWarnings does, with fields)."""
    structlog.get_logger("py.warnings").warning(
        "python.warning", category=category.__name__, message=str(message).strip(), where=f"{filename}:{lineno}")


def _uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """An exception nothing caught, logged with its traceback instead of printed."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    structlog.get_logger("erasure").error("python.uncaught", error=kind.__name__, exc_info=(kind, exc, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    """As `_uncaught`, for an exception that ends a thread."""
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    thread = args.thread.name if args.thread is not None else None
    structlog.get_logger("erasure").error("python.uncaught", error=args.exc_type.__name__, thread=thread,
                                          exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


class _Stderr:
    """Whatever sys.stderr is at the moment of writing (tests and tools swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
