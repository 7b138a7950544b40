"""The vector connector on a Qdrant collection in local mode (the client's own engine, on a folder),
and against a server that is not there."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from qdrant_client import QdrantClient

from connectors.base import SnapshotHit, Subject
from connectors.errors import PermanentError, TransientError
from connectors.vector.connector import VectorConnector
from tests.helpers import free_port, user, vector_connector

FOLDS = {"user_id": (), "email": ("lower",)}
PAYLOADS = [
    {"user_id": 42, "email": "a@x"},  # 1: the subject's, as an integer
    {"user_id": "42", "email": "b@x"},  # 2: the subject's, as text
    {"user_id": 4, "email": "c@x"},  # 3..: neighbours and look-alikes
    {"user_id": 420, "email": "d@x"},
    {"user_id": "042", "email": "e@x"},
    {"user_id": "42 ", "email": "f@x"},
    {"user_id": 42.5, "email": "g@x"},
    {"user_id": [42, 7], "email": "h@x"},  # a list matches nothing, as in a snapshot
    {"email": "i@x"},
    {"user_id": None, "email": "j@x"},
]


def connector(folder: str, **overrides: Any) -> VectorConnector:
    """A qdrant system over collection `docs` in a local-mode folder, matching user_id."""
    raw = {"name": "search", "kind": "vector", "backend": "qdrant", "path": folder, "collection": "docs",
           "where": {"user_id": "user_id"}} | overrides
    return vector_connector(raw, FOLDS)


def points(client: QdrantClient) -> dict[Any, list[float]]:
    """Every point's vector, by id."""
    records, _ = client.scroll("docs", limit=100, with_vectors=True)
    return {r.id: list(r.vector) for r in records}  # type: ignore[arg-type]


def test_erase_takes_the_subjects_points_and_only_theirs(
        qdrant_path: Callable[..., str], qdrant_client: Callable[[str], QdrantClient]) -> None:
    """42 takes the points holding 42 or "42"; 4, 420, "042", "42 ", 42.5 and a list stay, vectors unchanged."""
    folder = qdrant_path(PAYLOADS)
    look = QdrantClient(path=folder)
    before = points(look)
    look.close()
    with connector(folder) as c:
        assert c.verify(user("42")) == 2
        outcome = c.erase(user("42"))
        assert c.verify(user("42")) == 0
        assert c.erase(user("42")).items_erased == 0
    assert outcome.items_erased == 2
    assert outcome.snapshots == (SnapshotHit("search:docs", 2),)
    assert points(qdrant_client(folder)) == {k: v for k, v in before.items() if k not in (1, 2)}


def test_an_injection_or_a_neighbour_matches_nothing_more(
        qdrant_path: Callable[..., str], qdrant_client: Callable[[str], QdrantClient]) -> None:
    """"42 OR 1=1" is no value anybody holds; 4 takes 4 alone."""
    folder = qdrant_path(PAYLOADS)
    with connector(folder) as c:
        assert c.erase(user("42 OR 1=1")).items_erased == 0
        assert c.erase(user('42" || true')).items_erased == 0
        assert c.erase(user("4")).items_erased == 1
    assert sorted(points(qdrant_client(folder))) == [1, 2, 4, 5, 6, 7, 8, 9, 10]


def test_text_is_matched_after_its_fold_and_fields_are_anded(
        qdrant_path: Callable[..., str], qdrant_client: Callable[[str], QdrantClient]) -> None:
    """A stored O'Brien@X is o'brien@x's; with two where fields, both must hold the subject's values."""
    folder = qdrant_path([{"user_id": 1, "email": "O'Brien@X"}, {"user_id": 2, "email": "o'brien@x"},
                          {"user_id": 3, "email": "o'brien@x.y"}])
    with connector(folder, where={"user_id": "user_id", "email": "email"}) as c:
        assert c.erase(Subject({"email": ("o'brien@x",)})).items_erased == 0  # lacks a user_id: nobody
        assert c.erase(Subject({"email": ("o'brien@x",), "user_id": ("1",)})).items_erased == 1
    with connector(folder, where={"email": "email"}) as c:
        assert c.erase(Subject({"email": ("o'brien@x",)})).items_erased == 1
    assert sorted(points(qdrant_client(folder))) == [3]


def test_match_exact_lets_qdrant_filter(qdrant_path: Callable[..., str]) -> None:
    """With match = "exact", a stored Mary@X is not mary@x's, and 42 as text or integer is found by Qdrant's filter."""
    folder = qdrant_path([{"user_id": 42, "email": "Mary@X"}, {"user_id": "42", "email": "mary@x"}])
    with connector(folder, where={"email": "email"}, match="exact") as c:
        assert c.verify(Subject({"email": ("mary@x",)})) == 1
    with connector(folder, match="exact") as c:
        assert c.erase(user("42")).items_erased == 2


def test_a_missing_collection_or_field_fails_naming_it(qdrant_path: Callable[..., str]) -> None:
    """No collection, or no point with the where field: a PermanentError naming it."""
    folder = qdrant_path(PAYLOADS)
    with connector(folder, collection="nope") as c, pytest.raises(PermanentError, match="no such collection"):
        c.verify(user("42"))
    with connector(folder, where={"owner": "user_id"}) as c, pytest.raises(PermanentError, match="'owner'"):
        c.erase(user("42"))


def test_a_server_not_answering_is_transient() -> None:
    """A Qdrant URL nobody listens on: a TransientError, retried later."""
    c = vector_connector({"name": "search", "kind": "vector", "backend": "qdrant",
                          "url": f"http://127.0.0.1:{free_port()}", "collection": "docs",
                          "where": {"user_id": "user_id"}}, FOLDS)
    with c, pytest.raises(TransientError, match="unreachable"):
        c.verify(user("42"))


@pytest.fixture
def answering() -> Iterator[Callable[[int], tuple[str, list[dict[str, str]]]]]:
    """An HTTP server on 127.0.0.1 answering every request with one status; its URL and the headers it saw."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int) -> tuple[str, list[dict[str, str]]]:
        seen: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                seen.append({k.lower(): v for k, v in self.headers.items()})
                body = b'{"status": {"error": "nope"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
@pytest.mark.parametrize(("status", "error"), [(503, TransientError), (429, TransientError),
                                               (401, PermanentError), (404, PermanentError)])
def test_a_servers_answer_is_retried_or_fails_by_its_status(
        answering: Callable[[int], tuple[str, list[dict[str, str]]]], monkeypatch: pytest.MonkeyPatch,
        status: int, error: type[Exception]) -> None:
    """429 and 5xx are retried, another 4xx fails; the API key named by api_key_env is sent, and never shown."""
    url, seen = answering(status)
    monkeypatch.setenv("QDRANT_TEST_KEY", "s3cret-key")
    c = vector_connector({"name": "search", "kind": "vector", "backend": "qdrant", "url": url,
                          "api_key_env": "QDRANT_TEST_KEY", "collection": "docs",
                          "where": {"user_id": "user_id"}}, FOLDS)
    with c, pytest.raises(error, match=f"HTTP {status}") as raised:
        c.erase(user("42"))
    assert seen and all(h.get("api-key") == "s3cret-key" for h in seen)
    assert "s3cret" not in str(raised.value) and "s3cret" not in repr(c.config)


def test_an_unset_api_key_variable_fails_the_erase_before_any_call(
        answering: Callable[[int], tuple[str, list[dict[str, str]]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A server system whose api_key_env is unset loads; erase() and verify() fail with a PermanentError
    naming the variable, and the server receives no request."""
    url, seen = answering(200)
    monkeypatch.delenv("QDRANT_TEST_KEY", raising=False)
    c = vector_connector({"name": "search", "kind": "vector", "backend": "qdrant", "url": url,
                          "api_key_env": "QDRANT_TEST_KEY", "collection": "docs",
                          "where": {"user_id": "user_id"}}, FOLDS)
    with c:
        with pytest.raises(PermanentError, match="^the environment variable QDRANT_TEST_KEY is not set$"):
            c.erase(user("42"))
        with pytest.raises(PermanentError, match="QDRANT_TEST_KEY is not set"):
            c.verify(user("42"))
    assert seen == []
