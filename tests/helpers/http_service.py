"""A fake internal service over a real socket, for the http connector: it keeps users' records, checks
each call's Erasure-Signature with connectors.signing, records every call (path as sent, headers, body),
and answers as a script says first (a 202 job, a 429 with Retry-After, a 500, a 400, a slow answer).

    DELETE /users/ID              erase a user: 200 {"items_erased": N}, or 404
    POST   /erasures              the same, the user named by the JSON body's "user_id"
    DELETE /async/users/ID        erase, answering 202 with a Location: /jobs/N answers 202 `job_polls`
                                  times, then 200 {"items_erased": N} (or 404 if there was nothing)
    GET    /users/ID/records      the user's records as a JSON list ([] once erased or never held)
    GET    /users/ID              200 {"id": ...} while the user is there, else 404
Path segments are percent-decoded one by one, as a service's router does."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from connectors import signing

# the environment variables a test's system table names, and what the service expects in them
HTTP_SECRET_ENV, HTTP_TOKEN_ENV = "ERASURE_TEST_HTTP_SECRET", "ERASURE_TEST_HTTP_TOKEN"
HTTP_SECRET, HTTP_TOKEN = "signing-secret-for-the-tests", "tok-5e3d9a"


def service_raw(base: str, path: str = "/users/{user_id}", **overrides: Any) -> dict[str, Any]:
    """A `billing` http system table calling the service at `base`, token and secret from the environment."""
    raw = {"name": "billing", "kind": "http", "url": base + path, "method": "DELETE", "secret_env": HTTP_SECRET_ENV,
           "headers": {"Authorization": {"env": HTTP_TOKEN_ENV, "prefix": "Bearer "}, "Accept": "application/json"},
           "timeout_seconds": 5}
    return raw | overrides


def start_service(environ: Any) -> FakeService:
    """The service started, its secret and token put in the environment (`environ`: pytest's monkeypatch)."""
    environ.setenv(HTTP_SECRET_ENV, HTTP_SECRET)
    environ.setenv(HTTP_TOKEN_ENV, HTTP_TOKEN)
    return FakeService(HTTP_SECRET.encode(), token=f"Bearer {HTTP_TOKEN}")


@dataclass
class Reply:
    """A scripted answer for the next call: a status (None: answer as the service would) after a delay."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass(frozen=True)
class Call:
    """One call as the service received it."""

    method: str
    path: str  # as sent, still percent-encoded
    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature verified

    @property
    def key(self) -> str | None:
        """Its Idempotency-Key."""
        return self.headers.get("idempotency-key")


class FakeService:
    """The service, on a free loopback port, until stop()."""

    def __init__(self, secret: bytes, token: str | None = None) -> None:
        self.secret, self.token = secret, token
        self.records: dict[str, list[str]] = {}
        self.calls: list[Call] = []
        self.script: list[Reply] = []
        self.job_polls = 1
        self.jobs: dict[str, list[int]] = {}  # job -> [polls left, items]
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.handle_error = lambda *_: None  # type: ignore[method-assign]  # a client gone mid-answer
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where it listens: http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        """Record the call, then the script's next reply or the service's own answer."""
        try:
            signing.verify(self.secret, body, headers.get(signing.HEADER.lower()))
            signed = True
        except signing.SignatureError:
            signed = False
        with self._lock:
            self.calls.append(Call(method, path, headers, body, signed))
            reply = self.script.pop(0) if self.script else Reply()
        time.sleep(reply.delay)
        if reply.status is not None:
            return reply.status, reply.headers, reply.body
        if not signed or (self.token and headers.get("authorization") != self.token):
            return 401, {}, {"error": "who are you?"}
        with self._lock:
            return self._route(method, [unquote(s) for s in path.split("?")[0].split("/")[1:]], body)

    def _route(self, method: str, parts: list[str], body: bytes) -> tuple[int, dict[str, str], Any]:
        match method, parts:
            case "DELETE", ["users", user]:
                return self._erase(user)
            case "POST", ["erasures"]:
                return self._erase(str(json.loads(body)["user_id"]))
            case "DELETE", ["async", "users", user]:
                items = len(self.records.pop(user, []))
                job = str(len(self.jobs) + 1)
                self.jobs[job] = [self.job_polls, items]
                return 202, {"Location": f"/jobs/{job}", "Retry-After": "0"}, None
            case "GET", ["jobs", job] if job in self.jobs:
                left, items = self.jobs[job]
                if left > 0:
                    self.jobs[job][0] -= 1
                    return 202, {"Retry-After": "0"}, None
                return (200, {}, {"items_erased": items}) if items else (404, {}, None)
            case "GET", ["users", user, "records"]:
                return 200, {}, list(self.records.get(user, []))
            case "GET", ["users", user]:
                return (200, {}, {"id": user}) if user in self.records else (404, {}, None)
        return 404, {}, {"error": "no such route"}

    def _erase(self, user: str) -> tuple[int, dict[str, str], Any]:
        if user not in self.records:
            return 404, {}, {"error": "not found"}
        return 200, {}, {"items_erased": len(self.records.pop(user))}


def _handler(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = service.answer(self.command, self.path, headers, body)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            """Quiet: the tests read `calls`."""

    return Handler
