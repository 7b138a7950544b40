"""The safety net under "no identifier's value in a log line or an error": while code works on a
subject, its values are known here (per thread and task, in a context variable), and every log
event and every error text written to the store is scrubbed of them. Code is still written never
to log a value; this catches what slips through (a driver's error echoing a bound parameter, say).

A value is replaced where it stands as a whole token, not inside a longer word or number, so that
a user_id of 42 does not mangle `items=420` or a request id; the value itself, however short,
never survives on its own."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

MASK = "[redacted]"
# the values known in this context, and the pattern that finds them
_known: ContextVar[tuple[frozenset[str], re.Pattern[str] | None]] = ContextVar(
    "erasure_redact", default=(frozenset(), None))


def _pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted({v for v in values if v}, key=len, reverse=True)  # longest first: a@b.c before b.c
    if not ordered:
        return None
    alternatives = "|".join(re.escape(v) for v in ordered)
    return re.compile(rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])", re.IGNORECASE)


@contextmanager
def values(known: Iterable[str]) -> Iterator[None]:
    """Scrub these values (with any already known) from logs and errors until the block ends."""
    merged = _known.get()[0] | {v for v in known if v}
    token = _known.set((merged, _pattern(merged)))
    try:
        yield
    finally:
        _known.reset(token)


def scrub(text: str) -> str:
    """The text with every known value masked."""
    pattern = _known.get()[1]
    return text if pattern is None else pattern.sub(MASK, text)


def _scrub_any(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(str(k)) if isinstance(k, str) else k: _scrub_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_any(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(str(value))
    return value


def processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every string in the event, at any depth, scrubbed."""
    if _known.get()[1] is None:
        return event
    for key in list(event):
        event[key] = _scrub_any(event[key])
    return event
