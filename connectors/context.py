"""What a connector may know of its work beyond the subject: the id of the request it erases for.
The worker sets it around one request's erase, in a context variable (per thread and task, as
connectors.redact keeps the values), so `erase(subject)` keeps its one argument; a kind that tells
a service who asks (the http kind's Idempotency-Key) reads it, and has a fallback when it is unset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_request: ContextVar[str | None] = ContextVar("erasure_request", default=None)


@contextmanager
def request(request_id: str | None) -> Iterator[None]:
    """Erasing for this request until the block ends (None: for no single request, a batch say)."""
    token = _request.set(request_id)
    try:
        yield
    finally:
        _request.reset(token)


def request_id() -> str | None:
    """The id of the request being erased for, or None when the caller did not say."""
    return _request.get()
