"""Logging: structlog events with fields, JSON lines when not on a terminal (or when
ERASURE_LOG_FORMAT=json), readable lines otherwise; the stdlib (Celery, kombu) goes
through the same processors. Logs go to stderr so stdout stays for command output."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from connectors import redact
from worker import config as settings

SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(level: str = "INFO", fmt: str | None = None) -> None:
    """Set up structlog and the stdlib root logger once for this process."""
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
        foreign_pre_chain=SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # a traceback as text, so that redact scrubs it too
            redact.processor,
            renderer,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "alembic", "amqp", "kombu", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class _Stderr:
    """Whatever sys.stderr is at the moment of writing (tests and tools swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
