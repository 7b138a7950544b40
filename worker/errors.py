"""Every error the project raises, in one hierarchy; a connector's are in connectors/errors.py.

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

from connectors.errors import (
    ConfigError,
    ConnectorError,
    ErasureError,
    PermanentError,
    TransientError,
    one_line,
)

__all__ = ["ConfigError", "ConnectorError", "ErasureError", "InputError", "NoSuchRequest", "PermanentError",
           "RefusedError", "TransientError", "one_line"]


class InputError(ErasureError):
    """A request or command argument is invalid; nothing was recorded."""


class NoSuchRequest(ErasureError):
    """No request with that id exists in the store."""


class RefusedError(ErasureError):
    """The command is well formed but not allowed in the current state."""
