"""Sessions of the status page: a read token typed into a form once, traded for a cookie that holds
no token (`v1.EXPIRY.MAC`, an HMAC of the expiry and the token's SHA-256 under a key derived from
the store's newest secret), checked against every read token configured now, in constant time. A
session's forms carry its CSRF token (an HMAC of the cookie under the same key), checked on POST."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import parse_qs

from fastapi import Request

from worker.runtime import Runtime

REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SESSION_SECONDS = 8 * 3600  # a working day; then the token is typed again


FORM_CAP = 4096


class Sessions:
    """Session cookies for read tokens, made and checked as the module's docstring says."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def _mac(self, expires: int, token_hash: str) -> str:
        key = self._rt.keyring.session_key()  # the keyring loads on first use; the derivation is cached
        return hmac.new(key, f"v1:{expires}:{token_hash}".encode(), hashlib.sha256).hexdigest()

    def issue(self, token: str, now: float) -> str:
        """A cookie value for a read token, valid for SESSION_SECONDS from now."""
        expires = int(now) + SESSION_SECONDS
        return f"v1.{expires}.{self._mac(expires, hashlib.sha256(token.encode()).hexdigest())}"

    def valid(self, cookie: str | None, now: float) -> bool:
        """Whether a cookie is unexpired and was issued for a token that is configured with `read` now."""
        return self.scopes(cookie, now) is not None

    def scopes(self, cookie: str | None, now: float) -> frozenset[str] | None:
        """The scopes configured now for the token a cookie was issued for, if it is unexpired and that
        token can read (`operate` can); None otherwise."""
        held = self.holder(cookie, now)
        return None if held is None else held[1]

    def holder(self, cookie: str | None, now: float) -> tuple[str, frozenset[str]] | None:
        """The SHA-256 and the scopes of the token a cookie was issued for, as `scopes` finds them."""
        version, _, rest = (cookie or "").partition(".")
        expires, _, mac = rest.partition(".")
        if version != "v1" or not expires.isdigit() or len(expires) > 12 or int(expires) <= now:
            return None
        found = None
        for token_hash, scopes in self._rt.config.api.tokens.items():  # no early exit, as api.Tokens
            if hmac.compare_digest(self._mac(int(expires), token_hash).encode(), mac.encode()) and "read" in scopes:
                found = (token_hash, scopes)
        return found

    def csrf(self, cookie: str) -> str:
        """The CSRF token of a session, for the hidden field of its forms: another site's page can
        neither read it nor make it, and it ends with the session."""
        return hmac.new(self._rt.keyring.session_key(), f"csrf:v1:{cookie}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str, sent: str | None) -> bool:
        """Whether a form carried its session's CSRF token (compared in constant time)."""
        return hmac.compare_digest(self.csrf(cookie).encode(), (sent or "").encode("utf-8", "replace"))


def cookie_name(request: Request) -> str:
    """The `__Host-` prefix over https makes browsers insist on Secure, Path=/ and no Domain."""
    return "__Host-erasure-session" if request.url.scheme == "https" else "erasure-session"


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a page of this one only, never another site."""
    if path and (path == "/" or re.fullmatch(rf"/requests/{REQUEST_ID.pattern}", path)):
        return path
    return "/"


async def read_form(request: Request, fields: int = 4) -> dict[str, str] | None:
    """A small url-encoded form of at most `fields` fields, each field's first value; None if it is too
    big or malformed."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_CAP:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=fields, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in parsed.items()}


def cross_site(request: Request) -> bool:
    """Whether a browser says this request came from another site's page."""
    return request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
