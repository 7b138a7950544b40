"""The errors a connector raises, and the root of every error the project raises on purpose
(the worker's own, a refused input say, are in worker/errors.py):

    ErasureError
    ├── ConfigError      the config file is wrong: start-up stops, naming file, system and key
    ├── (worker) InputError, NoSuchRequest, RefusedError
    └── ConnectorError   raised by connectors only, translated from their library's errors
        ├── TransientError   the system may answer later: retry with backoff
        └── PermanentError   retrying will not help: the system fails with this reason

Task code catches only these; vendor exceptions never cross a connector's boundary.
Messages are one line and never carry an identifier's value.
"""

from connectors.redact import scrub


class ErasureError(Exception):
    """Base of every error erasure-worker raises on purpose."""


class ConfigError(ErasureError):
    """The configuration is invalid; the message names the file, the system and the key."""


class ConnectorError(ErasureError):
    """A connector could not erase or verify."""


class TransientError(ConnectorError):
    """A failure that may pass: the attempt is retried with backoff, waiting at least `retry_after`
    seconds when the system said how long (an HTTP Retry-After)."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """A failure that retrying cannot fix: the system fails with this reason."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The exception as one short line, fit for a status field or a log event, scrubbed of the
    values of the subject being worked on (a driver may echo a bound parameter)."""
    text = scrub(" ".join(str(exc).split())) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
