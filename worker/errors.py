"""Every error the project raises, in one hierarchy.

    ErasureError
    ├── ConfigError      the config file is wrong: start-up stops, naming file, system and key
    ├── InputError       a request is malformed: refused, nothing recorded, nothing erased
    ├── NoSuchRequest    a request id that the store does not hold
    ├── RefusedError     a command that is valid but not allowed in the request's state
    └── ConnectorError   raised by connectors only, translated from their library's errors
        ├── TransientError   the system may answer later: retry with backoff
        └── PermanentError   retrying will not help: the system fails with this reason

Task code catches only these; vendor exceptions never cross a connector's boundary.
Messages are one line and never carry an identifier's value.
"""

from worker.redact import scrub


class ErasureError(Exception):
    """Base of every error erasure-worker raises on purpose."""


class ConfigError(ErasureError):
    """The configuration is invalid; the message names the file, the system and the key."""


class InputError(ErasureError):
    """A request or command argument is invalid; nothing was recorded."""


class NoSuchRequest(ErasureError):
    """No request with that id exists in the store."""


class RefusedError(ErasureError):
    """The command is well formed but not allowed in the current state."""


class ConnectorError(ErasureError):
    """A connector could not erase or verify."""


class TransientError(ConnectorError):
    """A failure that may pass: the attempt is retried with backoff."""


class PermanentError(ConnectorError):
    """A failure that retrying cannot fix: the system fails with this reason."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The exception as one short line, fit for a status field or a log event, scrubbed of the
    values of the subject being worked on (a driver may echo a bound parameter)."""
    text = scrub(" ".join(str(exc).split())) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
