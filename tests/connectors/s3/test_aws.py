"""connectors/aws.py: an `s3` system and a snapshot system on an s3:// location read the store's
answers alike. Answers moto cannot give (429, 503, a proxy's 502, a refused HEAD, a DeleteObjects
entry refused with SlowDownWrite) come from a scripted HTTP server on 127.0.0.1, the rest from
moto's server: both over a real socket."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

import pytest

from connectors.errors import ConnectorError, PermanentError, TransientError
from connectors.snapshot.locations.s3 import S3Folder
from tests.helpers import (
    AWS_ENV,
    JSONL_SUFFIXES,
    free_port,
    s3_connector,
    s3_folder,
    s3_snapshot_config,
    uploads_raw,
    user,
)


@dataclass(frozen=True)
class Request:
    """One request the scripted store received: its method, key (after the bucket), query and body."""

    method: str
    key: str
    query: dict[str, str]
    body: bytes


Script = Callable[[Request], tuple[int, bytes]]  # a request -> (HTTP status, body)


class ScriptedStore(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 answering S3 requests as its script says."""

    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)
        self.script = script

    @property
    def endpoint(self) -> str:
        """The URL a client is pointed at."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Answer(BaseHTTPRequestHandler):
    """Reads one request and answers it by the store's script (a HEAD's answer has no body)."""

    protocol_version = "HTTP/1.1"
    server: ScriptedStore

    def answer(self) -> None:
        """Answer the request by the script."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        key = unquote(parts.path).lstrip("/").partition("/")[2]
        query = {name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        status, payload = self.server.script(Request(self.command, key, query, body))
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = answer

    def log_message(self, format: str, *args: Any) -> None:
        """Say nothing."""


def error_xml(code: str, message: str = "") -> bytes:
    """An S3 error answer's body."""
    return f"<Error><Code>{code}</Code><Message>{escape(message)}</Message><RequestId>r1</RequestId></Error>".encode()


def refusing(status: int, code: str = "", body: bytes | None = None) -> Script:
    """Every request refused with one status and S3 error code (or a body of the test's own)."""
    return lambda request: (status, error_xml(code) if body is None else body)


def one_old_version(entry_code: str, entry_message: str = "", head_status: int = 200) -> Script:
    """A versioned store with one older version at every prefix listed, whose DeleteObjects refuses
    each key with `entry_code`, and whose every HEAD is answered `head_status`."""

    def script(request: Request) -> tuple[int, bytes]:
        if request.method == "HEAD":
            return head_status, b""
        if request.method == "GET" and "versions" in request.query:
            prefix = request.query.get("prefix", "")
            key = escape(prefix + ("a.png" if prefix.endswith("/") else ""))
            return 200, (
                "<ListVersionsResult><IsTruncated>false</IsTruncated><Version>"
                f"<Key>{key}</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest>"
                "<LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>\"e\"</ETag><Size>1</Size>"
                "</Version></ListVersionsResult>"
            ).encode()
        if request.method == "GET" and "versionId" in request.query:
            return 200, b'{"user_id": "987654"}\n'
        if request.method == "POST" and "delete" in request.query:
            keys = [e.text or "" for e in ET.fromstring(request.body).iter() if e.tag.endswith("Key")]
            errors = "".join(
                f"<Error><Key>{escape(k)}</Key><VersionId>v1</VersionId><Code>{entry_code}</Code>"
                f"<Message>{escape(entry_message)}</Message></Error>"
                for k in keys
            )
            return 200, f"<DeleteResult>{errors}</DeleteResult>".encode()
        return 501, error_xml("NotImplemented")

    return script


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test access key in the environment, for stores that are not moto."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def store(credentials: None) -> Iterator[ScriptedStore]:
    """A scripted store serving in a thread (every request a 500 until the test scripts it)."""
    server = ScriptedStore(refusing(500, "InternalError"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def one_try_per_call(client: Any) -> Any:
    """The client without botocore's own retries, so a test meets each answer once, without backoff."""
    client.meta.events.unregister("needs-retry.s3", unique_id="retry-config-s3")
    return client


def raised(action: Callable[[], object]) -> ConnectorError:
    """The project's error an action raised (the test fails if it raised none)."""
    with pytest.raises(ConnectorError) as err:
        action()
    return err.value


def s3_system_erasing(endpoint: str, bucket: str = "uploads", **overrides: Any) -> Callable[[], object]:
    """An `s3` system erasing user 987654 from the bucket."""

    def erase() -> object:
        with s3_connector(uploads_raw(bucket, endpoint, **overrides)) as connector:
            if "profile" not in overrides:
                one_try_per_call(connector.client)
            return connector.erase(user("987654"))

    return erase


def snapshot_location(endpoint: str, bucket: str = "clickstream", **options: Any) -> S3Folder:
    """A snapshot system's s3:// location, `s3://BUCKET/data/`, its client taking one try per call."""
    location = s3_folder(bucket, endpoint, **options)
    one_try_per_call(location.client)
    return location


def assert_alike(errors: list[ConnectorError], expected: type[ConnectorError], says: str) -> None:
    """Each error is of the expected class, says so, is one line, and carries no identifier value."""
    assert [type(e) for e in errors] == [expected] * len(errors)
    for error in errors:
        assert says in str(error)
        assert "\n" not in str(error) and "987654" not in str(error)


@pytest.mark.parametrize(
    ("status", "code", "expected", "says"),
    [
        (429, "TooManyRequests", TransientError, "TooManyRequests (HTTP 429)"),
        (503, "SlowDown", TransientError, "SlowDown (HTTP 503)"),
        (503, "ServiceUnavailable", TransientError, "ServiceUnavailable (HTTP 503)"),
        (500, "InternalError", TransientError, "InternalError (HTTP 500)"),
        (403, "AccessDenied", PermanentError, "AccessDenied (HTTP 403): the credentials are not allowed"),
        (403, "InvalidAccessKeyId", PermanentError, "InvalidAccessKeyId (HTTP 403): the store does not know"),
        (404, "NoSuchBucket", PermanentError, "NoSuchBucket (HTTP 404): the bucket does not exist"),
        (400, "InvalidArgument", PermanentError, "InvalidArgument (HTTP 400)"),
    ],
    ids=["429", "slowdown", "unavailable", "internal", "access-denied", "unknown-key", "no-bucket", "other-4xx"],
)
def test_both_read_an_error_answer_alike(
    store: ScriptedStore, status: int, code: str, expected: type[ConnectorError], says: str
) -> None:
    """The same answer to a listing is the same error for an s3 system's erase and a snapshot location's listing."""
    store.script = refusing(status, code)

    errors = [
        raised(s3_system_erasing(store.endpoint)),
        raised(lambda: snapshot_location(store.endpoint).data_files(JSONL_SUFFIXES)),
    ]

    assert_alike(errors, expected, says)


def test_a_proxys_5xx_page_is_transient_for_both(store: ScriptedStore) -> None:
    """A 502 whose body is a proxy's HTML page, not an S3 error, may pass: TransientError for both."""
    store.script = refusing(502, body=b"<html><body>502 Bad Gateway</body></html>")

    errors = [
        raised(s3_system_erasing(store.endpoint)),
        raised(lambda: snapshot_location(store.endpoint).data_files(JSONL_SUFFIXES)),
    ]

    assert_alike(errors, TransientError, "HTTP 502")


@pytest.mark.parametrize(
    ("head_status", "expected", "says"),
    [(429, TransientError, "HTTP 429"), (503, TransientError, "HTTP 503"), (403, PermanentError, "HTTP 403")],
    ids=["429", "503", "403"],
)
def test_both_read_a_refused_head_alike(
    store: ScriptedStore, head_status: int, expected: type[ConnectorError], says: str
) -> None:
    """A HEAD refused without a body (the s3 system asking why a version was kept, a snapshot
    location looking for its bucket): 429 and 5xx may pass, 403 will not."""
    store.script = one_old_version("AccessDenied", "Access Denied", head_status=head_status)

    errors = [
        raised(s3_system_erasing(store.endpoint)),
        raised(lambda: snapshot_location(store.endpoint).exists()),
    ]

    assert_alike(errors, expected, says)


@pytest.mark.parametrize(
    ("entry_code", "entry_message", "expected", "says"),
    [
        ("SlowDownWrite", "Resource requested is unwritable, please reduce your request rate", TransientError,
         "SlowDownWrite"),
        ("AccessDenied", "Mfa Authentication must be used for this request", PermanentError,
         "the bucket requires MFA to delete versions (AccessDenied)"),
        ("InvalidArgument", "Invalid version id specified", PermanentError, "InvalidArgument"),
    ],
    ids=["throttled", "mfa-delete", "other"],
)
def test_both_read_a_refused_delete_entry_alike(
    store: ScriptedStore, entry_code: str, entry_message: str, expected: type[ConnectorError], says: str
) -> None:
    """A DeleteObjects answer refusing a key, with no HTTP status of its own, is read by its code alike:
    throttling may pass; MFA delete and the rest will not."""
    store.script = one_old_version(entry_code, entry_message)

    errors = [
        raised(s3_system_erasing(store.endpoint)),
        raised(lambda: snapshot_location(store.endpoint).purge_history("s1/a.jsonl", lambda path: True)),
    ]

    assert_alike(errors, expected, says)


def test_a_missing_bucket_says_so_for_both(s3_endpoint: str) -> None:
    """On moto, a bucket that is not there fails both for good, saying the bucket does not exist."""
    errors = [
        raised(s3_system_erasing(s3_endpoint, "missing-bucket-7f3a")),
        raised(lambda: snapshot_location(s3_endpoint, "missing-bucket-7f3a").data_files(JSONL_SUFFIXES)),
    ]

    assert_alike(errors, PermanentError, "NoSuchBucket (HTTP 404): the bucket does not exist")
    assert all("missing-bucket-7f3a" in str(e) for e in errors)


def test_an_unknown_profile_fails_both_for_good(s3_endpoint: str) -> None:
    """A `profile` missing from the AWS config is the same PermanentError for both."""
    config = replace(s3_snapshot_config("s3://clickstream/data/", s3_endpoint), profile="no-such-profile-7f3a")
    location = S3Folder(config)

    errors = [
        raised(s3_system_erasing(s3_endpoint, profile="no-such-profile-7f3a")),
        raised(lambda: location.data_files(JSONL_SUFFIXES)),
    ]

    assert_alike(errors, PermanentError, "AWS profile 'no-such-profile-7f3a' not found")


def test_an_unreachable_endpoint_is_transient_for_both(credentials: None) -> None:
    """An endpoint nobody listens on may come back: TransientError for both."""
    endpoint = f"http://127.0.0.1:{free_port()}"

    errors = [
        raised(s3_system_erasing(endpoint)),
        raised(lambda: snapshot_location(endpoint).data_files(JSONL_SUFFIXES)),
    ]

    assert_alike(errors, TransientError, "endpoint unreachable")


def one_person_refused(entry_code: str) -> Script:
    """A store with one version at every prefix listed, whose DeleteObjects refuses with `entry_code` each key
    holding 987654 and deletes every other."""

    def script(request: Request) -> tuple[int, bytes]:
        if request.method == "GET" and "versions" in request.query:
            return one_old_version(entry_code)(request)
        if request.method == "POST" and "delete" in request.query:
            keys = [e.text or "" for e in ET.fromstring(request.body).iter() if e.tag.endswith("Key")]
            fates = "".join(
                f"<Error><Key>{escape(k)}</Key><VersionId>v1</VersionId><Code>{entry_code}</Code></Error>"
                if "987654" in k else f"<Deleted><Key>{escape(k)}</Key><VersionId>v1</VersionId></Deleted>"
                for k in keys
            )
            return 200, f"<DeleteResult>{fates}</DeleteResult>".encode()
        return 501, error_xml("NotImplemented")

    return script


@pytest.mark.parametrize(
    ("entry_code", "expected"), [("InvalidArgument", PermanentError), ("SlowDownWrite", TransientError)],
    ids=["permanent", "throttled"],
)
def test_a_refused_delete_entry_fails_only_the_subject_it_belongs_to(
    store: ScriptedStore, entry_code: str, expected: type[ConnectorError]
) -> None:
    """Three subjects share one DeleteObjects call; the keys of one are refused: that subject alone gets the error
    in its place (a throttled one after its tries), the others their outcomes."""
    store.script = one_person_refused(entry_code)

    with s3_connector(uploads_raw("uploads", store.endpoint)) as connector:
        one_try_per_call(connector.client)
        done = connector.erase_many([user("111"), user("987654"), user("222")])

    assert [type(outcome).__name__ for outcome in done] == ["Outcome", expected.__name__, "Outcome"]
    assert [getattr(outcome, "items_erased", None) for outcome in done] == [2, None, 2]
    assert entry_code in str(done[1]) and "987654" not in str(done[1])
