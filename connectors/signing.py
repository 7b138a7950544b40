"""The signature erasure-worker puts on every HTTP call it makes to another service (the http
connector's erase calls, the model-flag notice to a training platform), so the service can check
who calls it and refuse a replay:

    Erasure-Signature: t=UNIX,v1=HEX

HEX is HMAC-SHA256, under a secret both sides hold, of `UNIX.` followed by the request's body
(bytes, as sent; empty for a call without one). A receiver recomputes it, compares in constant
time, and refuses a `t` older than its tolerance (`verify` does all three; five minutes by default).
The secret is read from an environment variable the config names (`ConfigReader.secret`), never
from the config file."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Erasure-Signature"
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A signature header that is missing, malformed, stale or wrong."""


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `TIMESTAMP.BODY`."""
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, now: float | None = None) -> str:
    """The `Erasure-Signature` header's value for this body, at `now` (default: the clock)."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"


def verify(secret: bytes, body: bytes, header: str | None, now: float | None = None,
           tolerance: int = TOLERANCE_SECONDS) -> int:
    """Check a received header against the body; returns its timestamp, or raises SignatureError."""
    if not header:
        raise SignatureError(f"no {HEADER} header")
    pairs = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    try:
        timestamp = int(next(v for k, v in pairs if k == "t"))
    except (StopIteration, ValueError):
        raise SignatureError(f"{HEADER}: no t=UNIX") from None
    given = [v for k, v in pairs if k == "v1"]  # several while a secret is rotated
    if not given:
        raise SignatureError(f"{HEADER}: no v1=HEX")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise SignatureError(f"{HEADER}: t is more than {tolerance} s away (a replay, or a clock off)")
    expected = signature(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, v) for v in given):
        raise SignatureError(f"{HEADER}: the signature does not match")
    return timestamp
