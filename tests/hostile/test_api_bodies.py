"""POST /v1/requests with generated bodies, through the API's ASGI app: JSON of any shape, the request's
fields of any shape, bytes that are no JSON, odd Content-Type and Content-Length headers. No answer is a
5xx; anything but 202 records and enqueues nothing, and its problem repeats no value."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.helpers import HOSTILE_TOKEN, Examples, ListDispatch, free_texts, json_values, scopes, subject_shapes
from worker.runtime import Runtime
from worker.store.models import Request, SystemTask
from worker.surfaces.api import create_app

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

AUTH = {"Authorization": f"Bearer {HOSTILE_TOKEN}"}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    """The API over the hostile runtime, in-process; a server error comes back as a 500, not raised."""
    with TestClient(create_app(runtime), raise_server_exceptions=False) as made:
        yield made


def recorded(rt: Runtime) -> tuple[int, int]:
    """How many requests and system rows the store holds."""
    with rt.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Request)) or 0,
                session.scalar(select(func.count()).select_from(SystemTask)) or 0)


def bodies() -> st.SearchStrategy[Any]:
    """A request body: the four fields of any shape, maybe with unknown ones, or any JSON value."""
    fields = st.fixed_dictionaries({}, optional={"subject": subject_shapes(), "requested_by": free_texts(),
                                                 "idempotency_key": free_texts(), "scope": scopes()})
    extra = st.dictionaries(st.text(max_size=8), json_values(2), max_size=2)
    return st.tuples(fields, st.just({}) | extra).map(lambda pair: {**pair[1], **pair[0]}) | json_values()


def values_in(value: Any) -> list[str]:
    """The strings of a body a problem must not repeat: 5 characters or more, neither a plain word nor a
    plain name (an unknown identifier type is named when it is one)."""
    if isinstance(value, str):
        return [value] if len(value) >= 5 and not (value.isidentifier() and len(value) <= 40) else []
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*values_in(k), *values_in(v))]
    if isinstance(value, list):
        return [t for v in value for t in values_in(v)]
    return []


def test_any_json_body_is_answered_without_5xx_and_bad_ones_record_nothing(
    client: TestClient, runtime: Runtime, examples: Examples,
) -> None:
    """Any JSON body: 202 with the submit object and one request recorded (or the first, for a known key),
    else a 4xx problem that repeats no value of the body, with nothing recorded or enqueued."""
    sent = runtime.dispatch
    assert isinstance(sent, ListDispatch)

    @examples(150 if runtime.config.store_url.startswith("sqlite") else 40)
    @given(body=bodies())
    @example(body={"subject": {"email": "\ud800@x"}})
    @example(body={"subject": {"handle": "x/../4242424242"}})
    @example(body={"subject": {"user_id": "4242424242"}, "scope": ["training"]})
    @example(body={"subject": {"user_id": [["4242424242"]]}})
    def check(body: Any) -> None:
        before = recorded(runtime)
        sent.sent.clear()
        answer = client.post("/v1/requests", content=json.dumps(body).encode(), headers=AUTH)
        assert answer.status_code < 500, answer.text
        if answer.status_code != 202:
            assert 400 <= answer.status_code < 500
            assert answer.headers["content-type"] == "application/problem+json"
            assert [v for v in values_in(body) if v in answer.json()["detail"]] == []
            assert recorded(runtime) == before
            assert sent.sent == []
            return
        done = answer.json()
        assert set(done) == {"request_id", "status", "duplicate"}
        if not done["duplicate"]:
            assert recorded(runtime)[0] == before[0] + 1
            assert sent.sent == [("start", done["request_id"])]

    check()


def asgi_post(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """POST /v1/requests straight to the ASGI app with these raw header bytes (an HTTP client would
    normalize them; a server other than uvicorn may pass them on as sent); the status answered."""
    statuses: list[int] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/requests", "raw_path": b"/v1/requests", "query_string": b"", "root_path": "",
             "headers": [(b"authorization", f"Bearer {HOSTILE_TOKEN}".encode()), *headers],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    try:
        asyncio.run(app(scope, receive, send))
    except Exception:  # noqa: BLE001 - what the server would answer: a 500
        return 500
    return statuses[0]


def test_any_bytes_and_headers_are_answered_without_5xx(runtime: Runtime, examples: Examples) -> None:
    """Bytes that may be no JSON or no UTF-8, with any Content-Type and any Content-Length bytes (a "²" is
    a digit to Python, not to int()): no 5xx, and nothing recorded unless the answer is 202."""
    app = create_app(runtime)

    @examples(100 if runtime.config.store_url.startswith("sqlite") else 25)
    @given(raw=st.binary(max_size=64) | bodies().map(lambda b: json.dumps(b).encode()),
           content_type=st.sampled_from((b"application/json", b"text/plain", b"", b"application/json; charset=latin-1",
                                         b"multipart/form-data; boundary=x", b"\xff\xfe")),
           length=st.none() | st.sampled_from((b"0", b"-1", b"1e3", b" 12", b"\xb2", b"99999999999999999999", b"abc"))
           | st.binary(min_size=1, max_size=4))
    @example(raw=b'{"subject": {"user_id": "42"}}', content_type=b"application/json", length=b"\xb2")  # "²"
    @example(raw=b'{"subject": {"user_id": "42"}}', content_type=b"application/json", length=b"\xb9")  # "¹"
    @example(raw=b'{"subject": {"user_id": 1e999}}', content_type=b"application/json", length=None)
    @example(raw=b'{"subject": {"user_id": "' + b"9" * 5000 + b'"}}', content_type=b"application/json",
             length=None)
    @example(raw=b'{"subject": {"user_id": ' + b"9" * 5000 + b"}}", content_type=b"application/json", length=None)
    def check(raw: bytes, content_type: bytes, length: bytes | None) -> None:
        before = recorded(runtime)
        headers = [(b"content-type", content_type)]
        headers += [(b"content-length", str(len(raw)).encode() if length is None else length)]
        status = asgi_post(app, headers, raw)
        assert status < 500
        if status != 202:
            assert recorded(runtime) == before

    check()


@pytest.mark.parametrize("declared", [b"\xb2", b"\xb9", b"\xb3"])
def test_a_content_length_of_superscript_digits_is_413_not_500(runtime: Runtime, declared: bytes) -> None:
    """A Content-Length of Latin-1 "²" (str.isdigit() says yes, int() says no) is refused as a bad length,
    413, and records nothing; it used to raise a ValueError, a 500."""
    assert asgi_post(create_app(runtime), [(b"content-type", b"application/json"), (b"content-length", declared)],
                     b'{"subject": {"user_id": "42"}}') == 413
    assert recorded(runtime) == (0, 0)
