"""The http kind's read-only probe (`erasure check`): the secrets its calls need are set (the signing
secret, a header's token), and the service's host takes a connection. The erasing call itself is
never tried, nor `verify_url`: a service has no read-only form of the one, and the other, asked with
a made-up value, would tell nothing; a note says so."""

from __future__ import annotations

import socket

from connectors.base import Checked
from connectors.checks import Found
from connectors.errors import PermanentError
from connectors.http.config import HttpConfig

REACH_SECONDS = 10.0


def check(config: HttpConfig) -> Checked:
    """The secrets are there and the host answers on its port."""
    found = Found()
    try:
        config.signing_secret()
    except PermanentError as exc:
        found.problems.append(f"secret_env: {str(exc).split(': ', 1)[-1]}")
    for header in config.headers:
        try:
            header.value()
        except PermanentError as exc:
            found.problems.append(f"headers.{header.name}: {str(exc).split(': ', 1)[-1]}")
    targets = dict.fromkeys(t.origin for t in (config.url, config.verify_url) if t is not None)
    for _, host, port in targets:
        try:
            with socket.create_connection((host, port), timeout=min(config.timeout_seconds, REACH_SECONDS)):
                pass
        except OSError as exc:
            found.problems.append(f"{host}:{port} takes no connection ({exc.strerror or type(exc).__name__})")
    found.notes.append("the erasing call is not tried: a service has no read-only form of it"
                       + (", and verify_url is not asked (a made-up value would tell nothing)"
                          if config.verify_url else ""))
    return found.checked()
