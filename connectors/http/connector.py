"""The `http` kind: erases a subject from an internal service or a vendor's API with one signed call
per combination of the subject's values, follows an asynchronous job to its end, and verifies with
a GET. What each answer means:

    2xx           erased (`items_erased` from a JSON body's `items_erased`, else 1)
    404           nothing there: not found
    202+Location  a job: the Location (same host only) is polled until 200 or 404, or until
                  `async_timeout_seconds` fails the system
    429, 5xx, a time-out or a broken connection
                  tried again within the attempt (honouring Retry-After up to MAX_WAIT), then a
                  TransientError for the worker's backoff
    anything else (another 4xx, a redirect)
                  a PermanentError naming the status

Every erasing call carries `Idempotency-Key: REQUEST_ID:SYSTEM` (`:N` after it when a subject makes
several calls), and every call, polls and verifies included, an `Erasure-Signature` (connectors/signing.py).
Nothing this module says (errors, evidence) holds a URL with a value in it: only its template."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import httpx

from connectors import context, signing
from connectors.base import Checked, Connector, Outcome, Patterns, Subject
from connectors.errors import PermanentError, TransientError
from connectors.http import probe
from connectors.http.config import HttpConfig, UrlTemplate, origin

TRIES = 3  # sends of one call within an attempt, while it answers 429, 5xx or times out
MAX_WAIT = 30.0  # a longer Retry-After ends the attempt: the worker's backoff waits instead
POLL_FIRST, POLL_MOST = 0.5, 30.0  # the job's polls: backoff from the first wait to the most


class HttpConnector(Connector):
    """Erases a subject through a service's HTTP API, signed, idempotent, and verified by a GET."""

    kind = "http"
    config_class = HttpConfig
    config: HttpConfig

    def __init__(self, config: HttpConfig) -> None:
        super().__init__(config)
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, made on first use; it never follows a redirect (one could leave the host)."""
        if self._client is None:
            self._client = httpx.Client(timeout=self.config.timeout_seconds, follow_redirects=False)
        return self._client

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def erase(self, subject: Subject) -> Outcome:
        """One call per combination of the subject's values; the items each reports, added up."""
        c = self.config
        assert c.url is not None
        bindings = _bindings(subject, c.call_fields)
        key = self._idempotency_key(subject)
        calls = [self._erase_one(binding, key if len(bindings) == 1 else f"{key}:{n}")
                 for n, binding in enumerate(bindings, 1)]
        evidence: dict[str, Any] = {"method": c.method, "url": c.url.text, "calls": calls}
        if c.body is not None:
            evidence["body"] = c.body
        return Outcome(sum(call["items"] for call in calls), evidence)

    def verify(self, subject: Subject) -> int:
        """What `verify_url` still finds: 0 for a 404 or an empty JSON list, a list's length, else 1.
        Without a `verify_url` the service's word is taken: 0."""
        template = self.config.verify_url
        if template is None:
            return 0
        left = 0
        for binding in _bindings(subject, template.fields):
            response = self._send("GET", self._render(template, binding), b"", None, [], f"GET {template.text}")
            if response.status_code == 404:
                continue
            if not response.is_success:
                raise PermanentError(f"{self._where(f'GET {template.text}')} answered {response.status_code}")
            left += _count(response)
        return left

    def _erase_one(self, binding: dict[str, str], key: str) -> dict[str, Any]:
        """One erasing call (and its job, if it is one), as evidence: statuses, result and items."""
        c = self.config
        assert c.url is not None
        what = f"{c.method} {c.url.text}"
        url, statuses = self._render(c.url, binding), list[int]()
        response = self._send(c.method, url, c.render_body(binding), key, statuses, what)
        call: dict[str, Any] = {"statuses": statuses}
        if response.status_code == 202 and "location" in response.headers:
            response = self._await(url, response, call, what)
        if response.status_code == 404:
            return call | {"result": "not_found", "items": 0}
        if response.is_success:
            return call | {"result": "erased", "items": _items(response)}
        raise PermanentError(f"{self._where(what)} answered {response.status_code}")

    def _await(self, url: str, accepted: httpx.Response, call: dict[str, Any], what: str) -> httpx.Response:
        """Poll an asynchronous job's Location until it answers 200 or 404, or the time is up."""
        location = urljoin(url, accepted.headers["location"])
        if origin(location) != origin(url):
            raise PermanentError(f"{self._where(what)} answered 202 with a Location on another host: not followed")
        limit = self.config.async_timeout_seconds
        deadline, wait, polls = time.monotonic() + limit, _retry_after(accepted, POLL_FIRST), 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PermanentError(f"{self._where(what)}: its asynchronous job did not finish within {limit:g} s "
                                     f"({polls} polls)")
            time.sleep(min(wait, remaining))
            polls += 1
            try:
                response = self.client.get(location, headers=self._headers(b"", None))
            except httpx.RequestError:
                wait = min(2 * wait, POLL_MOST)  # the job goes on without us: keep asking until the deadline
                continue
            call["job"] = {"polls": polls, "status": response.status_code}
            if response.status_code in (202, 429) or response.status_code >= 500:
                wait = _retry_after(response, min(2 * wait, POLL_MOST))
                continue
            if response.status_code == 404 or response.is_success:
                return response
            raise PermanentError(f"{self._where(what)}: polling its job answered {response.status_code}")

    def _send(self, method: str, url: str, body: bytes, key: str | None, statuses: list[int],
              what: str) -> httpx.Response:
        """One call, sent again (freshly signed) while it answers 429 or 5xx or fails on the way."""
        for attempt in range(1, TRIES + 1):
            wait = 0.2 * 2 ** (attempt - 1)
            try:
                response = self.client.request(method, url, content=body or None, headers=self._headers(body, key))
            except httpx.RequestError as exc:
                problem = "timed out" if isinstance(exc, httpx.TimeoutException) else f"failed ({type(exc).__name__})"
                if attempt == TRIES:
                    raise TransientError(f"{self._where(what)} {problem} ({TRIES} tries)") from exc
            else:
                statuses.append(response.status_code)
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem = f"answered {response.status_code}"
                wait = _retry_after(response, wait)
                if wait > MAX_WAIT:
                    raise TransientError(f"{self._where(what)} {problem}, asking to wait {wait:.0f} s",
                                         retry_after=wait)
                if attempt == TRIES:
                    raise TransientError(f"{self._where(what)} {problem} ({TRIES} tries)", retry_after=wait)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _headers(self, body: bytes, key: str | None) -> dict[str, str]:
        """The configured headers, the signature over the body, and the idempotency key if any."""
        headers = {header.name: header.value() for header in self.config.headers}  # secrets read now
        headers[signing.HEADER] = signing.sign(self.config.signing_secret(), body)
        if body:
            headers["Content-Type"] = "application/json"
        if key:
            headers["Idempotency-Key"] = key
        return headers

    def _idempotency_key(self, subject: Subject) -> str:
        """`REQUEST_ID:SYSTEM`; when the worker did not say which request, a keyed hash of the subject's
        values stands for the request id (stable across retries, telling nothing of the values)."""
        request = context.request_id()
        if request is None:
            values = json.dumps({t: subject.values(t) for t in sorted(self.config.call_fields)}).encode()
            keyed = hmac.new(self.config.signing_secret(), b"idempotency\0" + values, hashlib.sha256)
            request = "subject-" + keyed.hexdigest()[:32]
        return f"{request}:{self.config.name}"

    def _render(self, template: UrlTemplate, binding: dict[str, str]) -> str:
        url = template.render(binding)
        if origin(url) != template.origin:  # cannot happen with encoded values; checked because it must not
            raise PermanentError(f"{self._where(template.text)}: a value would change the host")
        return url

    def _where(self, what: str) -> str:
        return f"http system {self.config.name!r}: {what}"

    def check(self, patterns: Patterns | None = None) -> Checked:
        """The secrets are set and the host takes a connection; the call itself is not tried (probe.py)."""
        return probe.check(self.config)


def _bindings(subject: Subject, fields: frozenset[str]) -> list[dict[str, str]]:
    """Each combination of the subject's values for these types; [] when it has none of one."""
    names = sorted(fields)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(subject.values(n) for n in names))]


def _items(response: httpx.Response) -> int:
    """A JSON body's `items_erased` when it is a count, else 1."""
    try:
        items = response.json().get("items_erased")
    except (ValueError, AttributeError):
        return 1
    return items if isinstance(items, int) and not isinstance(items, bool) and items >= 0 else 1


def _count(response: httpx.Response) -> int:
    """What a verify answer still holds: a JSON list's length, else 1."""
    try:
        found = response.json()
    except ValueError:
        return 1
    return len(found) if isinstance(found, list) else 1


def _retry_after(response: httpx.Response, otherwise: float) -> float:
    """The seconds a Retry-After header asks for (a number or an HTTP date), or `otherwise`."""
    given = response.headers.get("retry-after", "").strip()
    if given.isdigit():
        return float(given)
    try:
        when = parsedate_to_datetime(given)
    except (TypeError, ValueError, IndexError):
        return otherwise
    moment = when if when.tzinfo else when.replace(tzinfo=UTC)  # an HTTP date is GMT
    return max(0.0, moment.timestamp() - time.time())
