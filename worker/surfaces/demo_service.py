"""The demo's internal service: a newsletter platform that owns its subscribers and erases them
through an API, as the `http` kind reaches such services. It listens on 127.0.0.1, checks every
call's `Erasure-Signature` (connectors/signing.py) and refuses a bad or stale one with 401, and
answers `DELETE /subscribers/EMAIL` with 200 and the count of records erased, or 404."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from connectors import signing


class NewsletterService:
    """Subscribers (an email and the records held on them), served on a free loopback port."""

    def __init__(self, secret: bytes, subscribers: dict[str, int]) -> None:
        self.secret = secret
        self.subscribers = dict(subscribers)
        self.refused = 0  # calls whose signature did not verify
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for one call."""
        try:
            signing.verify(self.secret, body, signature)
        except signing.SignatureError:
            self.refused += 1
            return 401, {"error": "bad signature"}
        parts = path.split("?", 1)[0].strip("/").split("/")
        if method != "DELETE" or len(parts) != 2 or parts[0] != "subscribers":
            return 404, {"error": "no such route"}
        records = self.subscribers.pop(unquote(parts[1]), None)
        return (404, {"error": "not a subscriber"}) if records is None else (200, {"items_erased": records})


def _handler(service: NewsletterService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = service.answer("DELETE", self.path, body, self.headers.get(signing.HEADER))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # the demo prints what happened; an access log would show the emails in paths

    return Handler
