"""The HTTP API as support tooling and DPO dashboards use it: bearer tokens by their SHA-256 with
scopes, the contract's routes over a real store, problems that never echo a value and record
nothing, a body cap, Prometheus metrics read from the store, and no 5xx for any input."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from tests.helpers import ListDispatch, MakeRuntime, api_tokens, drain, free_port, stub, write_config
from worker.config import load, parse
from worker.errors import ConfigError
from worker.runtime import Runtime
from worker.store.models import Lineage, ModelFlag, Request, SystemTask, utcnow
from worker.surfaces.api import Tokens, create_app
from worker.surfaces.cli import main

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    import schemathesis
    from fastapi.testclient import TestClient
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

SUBMIT, READ, BOTH = "submit-only-token", "read-only-token", "submit-and-read-token"
SCOPES = {SUBMIT: ["submit"], READ: ["read"], BOTH: ["submit", "read"]}
TOKENS = api_tokens(SCOPES)
SYSTEMS = stub("crm") + stub("mail", uses=["email"])
NO_SUCH = "00000000-0000-4000-8000-000000000000"


def auth(token: str) -> dict[str, str]:
    """The header that carries a token."""
    return {"Authorization": f"Bearer {token}"}


def recorded(rt: Runtime) -> tuple[int, int]:
    """How many requests and system rows the store holds."""
    with rt.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Request)) or 0,
                session.scalar(select(func.count()).select_from(SystemTask)) or 0)


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """A runtime over a SQLite store with two stub systems and the three tokens."""
    return make_runtime(SYSTEMS, top=TOKENS)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The API over that runtime, in-process."""
    with TestClient(create_app(rt)) as made:
        yield made


def submit(client: TestClient, body: Any, token: str = BOTH) -> httpx.Response:
    """POST one request body."""
    return client.post("/v1/requests", json=body, headers=auth(token))


# --- config ------------------------------------------------------------------------------------------


def test_config_reads_tokens_by_hash_with_scopes(rt: Runtime) -> None:
    """[api.tokens] maps each token's SHA-256 to its scopes; the body cap defaults to 16 KiB."""
    digest = hashlib.sha256(READ.encode()).hexdigest()
    assert rt.config.api.tokens[digest] == frozenset({"read"})
    assert len(rt.config.api.tokens) == 3
    assert rt.config.api.max_body_bytes == 16384


def test_config_reads_a_token_given_a_name() -> None:
    """A token may be a table of its scopes and a name, which the audit trail records as who acted."""
    raw = {"identifiers": {"user_id": {"pattern": "^[0-9]+$"}},
           "systems": [{"name": "crm", "kind": "stub", "uses": ["user_id"]}],
           "api": {"tokens": {"a" * 64: {"scopes": ["operate"], "name": " dpo-anna "}, "b" * 64: ["read"]}}}
    api = parse(raw, Path("erasure.toml")).api
    assert api.tokens["b" * 64] == frozenset({"read"}) and "operate" in api.tokens["a" * 64]
    assert api.names == {"a" * 64: "dpo-anna"}


@pytest.mark.parametrize(("api", "names"), [
    ({"tokens": {"my-secret-token": ["read"]}}, "key 1"),
    ({"tokens": {"A" * 64: ["read"]}}, "key 1"),
    ({"tokens": {"a" * 64: ["admin"]}}, "aaaaaaaaaaaa"),
    ({"tokens": {"a" * 64: []}}, "aaaaaaaaaaaa"),
    ({"tokens": {"a" * 64: "read"}}, "aaaaaaaaaaaa"),
    ({"max_body_bytes": 10}, "max_body_bytes"),
    ({"token": {}}, "token"),
    ({"tokens": {"a" * 64: {"scopes": ["operate"]}}}, "name"),
    ({"tokens": {"a" * 64: {"scopes": ["operate"], "name": " "}}}, "name"),
    ({"tokens": {"a" * 64: {"scopes": ["operate"], "name": "anna\nroot"}}}, "name"),
    ({"tokens": {"a" * 64: {"scopes": ["operate"], "name": "x" * 101}}}, "name"),
    ({"tokens": {"a" * 64: {"scopes": ["operate"], "name": "anna", "role": "dpo"}}}, "role"),
    ({"tokens": {"a" * 64: {"name": "anna"}}}, "aaaaaaaaaaaa"),
])
def test_config_refuses_a_bad_api_table(api: dict[str, Any], names: str) -> None:
    """A key that is no lowercase SHA-256, an unknown or missing scope, a tiny cap: one line naming
    the file and the key, never the text of a key that may be a token pasted by mistake."""
    raw = {"identifiers": {"user_id": {"pattern": "^[0-9]+$"}},
           "systems": [{"name": "crm", "kind": "stub", "uses": ["user_id"]}], "api": api}
    with pytest.raises(ConfigError) as caught:
        parse(raw, Path("erasure.toml"))
    message = str(caught.value)
    assert message.startswith("erasure.toml: api") and names in message and "\n" not in message
    assert "my-secret-token" not in message and "A" * 64 not in message


def test_tokens_match_by_hash_and_any_position() -> None:
    """A token is known by its SHA-256 wherever it sits among the configured ones; the hash itself is no token."""
    hashes = {hashlib.sha256(t.encode()).hexdigest(): frozenset(s) for t, s in SCOPES.items()}
    tokens = Tokens(hashes)
    assert [tokens.scopes(t) for t in SCOPES] == [frozenset(s) for s in SCOPES.values()]
    assert tokens.scopes(next(iter(hashes))) is None
    assert tokens.scopes("") is None


# --- auth --------------------------------------------------------------------------------------------


def test_no_token_is_401_with_a_challenge(client: TestClient, rt: Runtime) -> None:
    """Without Authorization the answer is 401, WWW-Authenticate: Bearer, and nothing is recorded."""
    answer = client.post("/v1/requests", json={"subject": {"user_id": "42"}})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.headers["content-type"] == "application/problem+json"
    assert recorded(rt) == (0, 0)


@pytest.mark.parametrize("header", [
    "Bearer not-a-configured-token",
    "Bearer " + hashlib.sha256(BOTH.encode()).hexdigest(),  # the stored hash is not the token
    "Basic " + BOTH,
])
def test_unknown_token_is_401(client: TestClient, header: str) -> None:
    """An unknown token, the stored hash sent as a token, or another scheme: 401."""
    answer = client.get("/v1/requests", headers={"Authorization": header})
    assert answer.status_code == 401
    assert "Bearer" in answer.headers["www-authenticate"]


@pytest.mark.parametrize(("method", "path", "token"), [
    ("post", "/v1/requests", READ),
    ("get", "/v1/requests", SUBMIT),
    ("get", f"/v1/requests/{NO_SUCH}", SUBMIT),
    ("get", "/v1/models", SUBMIT),
    ("get", "/metrics", SUBMIT),
])
def test_wrong_scope_is_403(client: TestClient, rt: Runtime, method: str, path: str, token: str) -> None:
    """A known token without the route's scope is 403, naming the scope, and records nothing."""
    answer = client.request(method, path, headers=auth(token), json={"subject": {"user_id": "42"}})
    assert answer.status_code == 403
    assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
    assert recorded(rt) == (0, 0)


def test_right_scope_passes(client: TestClient) -> None:
    """A submit token submits and a read token reads."""
    assert submit(client, {"subject": {"user_id": "42"}}, SUBMIT).status_code == 202
    assert client.get("/v1/requests", headers=auth(READ)).status_code == 200


# --- submit ------------------------------------------------------------------------------------------


def test_submit_is_202_and_the_submit_json_object(client: TestClient, rt: Runtime) -> None:
    """POST /v1/requests records the request, enqueues it and answers the `submit --json` object."""
    answer = submit(client, {"subject": {"user_id": ["42", "43"], "email": "Zed@Example.com"},
                             "requested_by": "support-tool"})
    body = answer.json()
    assert answer.status_code == 202
    assert set(body) == {"request_id", "status", "duplicate"}
    assert (body["status"], body["duplicate"]) == ("received", False)
    assert recorded(rt) == (1, 2)
    assert isinstance(rt.dispatch, ListDispatch) and rt.dispatch.sent == [("start", body["request_id"])]


def test_duplicate_idempotency_key_answers_the_first(client: TestClient, rt: Runtime) -> None:
    """The same idempotency key again answers the same request with duplicate true, recording nothing new."""
    body = {"subject": {"user_id": "42"}, "idempotency_key": "ticket-981"}
    first, again = submit(client, body).json(), submit(client, body)
    assert again.status_code == 202
    assert again.json() == {**first, "duplicate": True}
    assert recorded(rt) == (1, 1)


def test_idempotency_key_of_another_subject_is_422(client: TestClient, rt: Runtime) -> None:
    """An idempotency key already used for another subject is refused."""
    submit(client, {"subject": {"user_id": "42"}, "idempotency_key": "ticket-981"})
    answer = submit(client, {"subject": {"user_id": "43"}, "idempotency_key": "ticket-981"})
    assert answer.status_code == 422
    assert recorded(rt) == (1, 1)


SECRET = "4242991377"  # appears in each bad body below; must never come back


@pytest.mark.parametrize("body", [
    {"subject": {"user_id": SECRET + "x"}},  # does not match the pattern
    {"subject": {"user_id": int(SECRET)}},  # not a string
    {"subject": {"user_id": [SECRET, ""]}},  # one empty value among good ones
    {"subject": {"user_id": ""}},  # empty value
    {"subject": {"user_id": []}},  # no value
    {"subject": {"user_id": "1" * 1025}},  # too long
    {"subject": {"user_id": {"$ne": SECRET}}},  # an operator where a value goes
    {"subject": {"phone": SECRET}},  # unknown identifier type
    {"subject": {f"{SECRET}@example.com": "1"}},  # a value sent as a type
    {"subject": [f"user_id={SECRET}"]},  # wrong shape
    {"subject": {}},
    {},
    {"subject": {"user_id": SECRET}, "requested_by": ""},
    {"subject": {"user_id": SECRET}, "notes": "x"},  # unknown field
    [{"subject": {"user_id": SECRET}}],  # not an object
    SECRET,
])
def test_bad_input_is_422_problem_and_records_nothing(client: TestClient, rt: Runtime, body: Any) -> None:
    """Bad identifiers, wrong shapes, unknown types and empty values: 422 with a problem that does not
    repeat the value; no row is written and no message is sent."""
    answer = submit(client, body)
    problem = answer.json()
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert set(problem) == {"type", "title", "status", "detail"} and problem["status"] == 422
    assert SECRET not in answer.text
    assert recorded(rt) == (0, 0)
    assert isinstance(rt.dispatch, ListDispatch) and rt.dispatch.sent == []


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b'{"subject": NaN}'])
def test_body_that_is_no_json_object_is_422(client: TestClient, rt: Runtime, raw: bytes) -> None:
    """Malformed JSON, no body, bad bytes, deep nesting, NaN: 422 and nothing recorded."""
    answer = client.post("/v1/requests", content=raw, headers={**auth(BOTH), "Content-Type": "application/json"})
    assert answer.status_code == 422
    assert recorded(rt) == (0, 0)


def test_oversized_body_is_413_before_parsing(client: TestClient, rt: Runtime) -> None:
    """A body over max_body_bytes, declared by Content-Length, is 413 and records nothing."""
    body = b'{"subject": {"user_id": "42"}, "requested_by": "' + b" " * 16384 + b'"}'
    answer = client.post("/v1/requests", content=body, headers=auth(BOTH))
    assert answer.status_code == 413
    assert answer.json()["detail"] == "the body may hold at most 16384 bytes"
    assert recorded(rt) == (0, 0)


def test_oversized_streamed_body_is_413(client: TestClient, rt: Runtime) -> None:
    """A chunked body with no Content-Length is cut off at the cap just the same."""
    def chunks() -> Iterator[bytes]:
        yield b'{"subject": {"user_id": "42"}, "requested_by": "'
        for _ in range(20):
            yield b" " * 1024
        yield b'"}'

    answer = client.post("/v1/requests", content=chunks(), headers=auth(BOTH))
    assert answer.status_code == 413
    assert recorded(rt) == (0, 0)


# --- reading -----------------------------------------------------------------------------------------


def test_status_is_the_status_object(client: TestClient, rt: Runtime) -> None:
    """GET /v1/requests/{id} answers the status object of that request once it has run."""
    request_id = submit(client, {"subject": {"user_id": "42"}}).json()["request_id"]
    drain(rt)
    status = client.get(f"/v1/requests/{request_id}", headers=auth(READ)).json()
    assert (status["request_id"], status["status"]) == (request_id, "completed")
    assert [(s["system"], s["status"], s["items_erased"]) for s in status["systems"]] == [("crm", "erased", 1)]


@pytest.mark.parametrize(("request_id", "code"), [(NO_SUCH, 404), ("not-a-request-id", 422)])
def test_unknown_or_malformed_request_id(client: TestClient, request_id: str, code: int) -> None:
    """An id the store does not hold is 404, one that is no request id 422; neither echoes it."""
    answer = client.get(f"/v1/requests/{request_id}", headers=auth(READ))
    assert answer.status_code == code
    assert answer.json()["status"] == code
    assert request_id not in answer.json()["detail"]


def test_listing_filters_by_status_and_overdue(client: TestClient, rt: Runtime) -> None:
    """GET /v1/requests lists newest first, by status, and only the overdue with overdue=true."""
    done = submit(client, {"subject": {"user_id": "42"}}).json()["request_id"]
    drain(rt)
    late = submit(client, {"subject": {"user_id": "43"}}).json()["request_id"]
    waiting = submit(client, {"subject": {"user_id": "44"}}).json()["request_id"]
    with rt.transaction() as session:
        session.execute(update(Request).where(Request.id == late).values(deadline=utcnow() - timedelta(days=1)))

    def ids(query: str) -> list[str]:
        return [r["request_id"] for r in client.get(f"/v1/requests{query}", headers=auth(READ)).json()]

    assert set(ids("")) == {done, late, waiting}
    assert ids("?status=completed") == [done]
    assert set(ids("?status=received")) == {late, waiting}
    assert ids("?overdue=true") == [late]
    assert client.get("/v1/requests?status=erased", headers=auth(READ)).status_code == 422


def test_report_is_the_certificate(client: TestClient, rt: Runtime) -> None:
    """GET /v1/requests/{id}/report answers the certificate; an unknown request is 404."""
    request_id = submit(client, {"subject": {"user_id": "42"}}).json()["request_id"]
    drain(rt)
    answer = client.get(f"/v1/requests/{request_id}/report", headers=auth(READ))
    assert answer.status_code == 200
    assert answer.json()["request_id"] == request_id
    assert client.get(f"/v1/requests/{NO_SUCH}/report", headers=auth(READ)).status_code == 404


def test_models_lists_versions_and_flagged(client: TestClient, rt: Runtime) -> None:
    """GET /v1/models answers every model version; flagged=true only those with flags."""
    request_id = submit(client, {"subject": {"user_id": "42"}}).json()["request_id"]
    now = utcnow()
    with rt.transaction() as session:
        for version in ("7", "8"):
            session.add(Lineage(model="recsys", version=version, snapshot="clicks:2026-11-01",
                                recorded_at=now, trained_at=now))
        session.add(ModelFlag(model="recsys", version="7", request_id=request_id,
                              snapshots=["clicks:2026-11-01"], flagged_at=now))
    every = client.get("/v1/models", headers=auth(READ)).json()
    flagged = client.get("/v1/models?flagged=true", headers=auth(READ)).json()
    assert [(m["model"], m["version"]) for m in every] == [("recsys", "7"), ("recsys", "8")]
    assert [(m["model"], m["version"], [f["request_id"] for f in m["flags"]]) for m in flagged] == [
        ("recsys", "7", [request_id])]


def test_healthz_needs_no_token_and_checks_the_store(client: TestClient, tmp_path: Path) -> None:
    """/healthz is 200 while the store answers, 503 when it cannot be opened."""
    assert client.get("/healthz").json() == {"status": "ok"}
    other = tmp_path / "other"
    other.mkdir()
    config = write_config(other, SYSTEMS, store_url="sqlite:////no/such/dir/state.db", top=TOKENS)
    broken = Runtime(load(config), dispatch=ListDispatch())
    answer = TestClient(create_app(broken)).get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["detail"] == "the store did not answer; try again"


def test_openapi_describes_every_route_and_the_identifier_types(client: TestClient) -> None:
    """/openapi.json lists the contract's routes and, for a request body, this config's identifier types."""
    schema = client.get("/openapi.json").json()
    assert {"/v1/requests", "/v1/requests/{request_id}", "/v1/requests/{request_id}/report",
            "/v1/models", "/metrics", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/requests"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]["subject"]["properties"]) == {"user_id", "email"}
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()


# --- metrics -----------------------------------------------------------------------------------------


def test_metrics_are_read_from_the_store(client: TestClient, rt: Runtime) -> None:
    """/metrics has requests by status, overdue, systems by status and kind, and duration and queue-wait
    quantiles by kind over the systems of the last hour, all from the rows the store holds."""
    now = utcnow()

    def ago(seconds: int) -> Any:
        return now - timedelta(seconds=seconds)

    def request(status: str, deadline: Any, *systems: SystemTask) -> Request:
        made = Request(id=str(uuid.uuid4()), subject_ref="ref", status=status,
                       received_at=ago(600), deadline=deadline)
        made.systems = list(systems)
        return made

    def system(name: str, kind: str, status: str, started: int | None = None, took: int = 0,
               attempts: int = 1, queued: int | None = None) -> SystemTask:
        return SystemTask(system=name, kind=kind, status=status, attempts=attempts,
                          started_at=None if started is None else ago(started),
                          finished_at=None if started is None or status == "pending" else ago(started - took),
                          queued_at=None if queued is None else ago(queued))

    later = now + timedelta(days=20)
    with rt.transaction() as session:
        session.add_all([
            request("completed", later, system("a", "sql", "erased", started=500, took=20),
                    system("b", "s3", "not_found", started=540, took=2)),
            request("completed", later, system("a", "sql", "erased", started=300, took=40, queued=400)),
            request("failed", later, system("a", "sql", "failed", started=100, took=4, attempts=2)),
            request("received", ago(60), system("a", "sql", "pending")),
            request("completed", later, system("a", "sql", "erased", started=9000, took=600)),  # outside the hour
        ])
    answer = client.get("/metrics", headers=auth(READ))
    assert answer.status_code == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(answer.text) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert [value("erasure_requests", status=s) for s in ("received", "in_progress", "completed", "failed")] == [
        1, 0, 3, 1]
    assert value("erasure_requests_overdue") == 1
    assert value("erasure_systems", status="erased", kind="sql") == 3
    assert value("erasure_systems", status="pending", kind="sql") == 1
    assert value("erasure_systems", status="not_found", kind="s3") == 1
    assert value("erasure_systems", status="erased", kind="stub") == 0  # a configured kind, none yet
    # settled in the last hour: sql took 20, 40 and 4 s; s3 took 2 s
    assert [value("erasure_system_duration_seconds", kind="sql", quantile=q) for q in ("0.5", "0.9", "1")] == [
        20, 40, 40]
    assert value("erasure_system_duration_seconds", kind="s3", quantile="0.5") == 2
    # first attempts started in the last hour: received 600 s ago, started 500 s ago; re-queued 400 s ago,
    # started 300 s ago (the second attempt, 100 s ago, is not counted: its wait is a backoff)
    assert [value("erasure_queue_wait_seconds", kind="sql", quantile=q) for q in ("0.5", "1")] == [100, 100]
    assert value("erasure_queue_wait_seconds", kind="s3", quantile="0.5") == 60


# --- no 5xx, whatever is sent ------------------------------------------------------------------------


EXAMPLES = 25  # per operation and mode: a few seconds in all


@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
def test_api_never_answers_5xx(rt: Runtime, mode: GenerationMode) -> None:
    """Requests generated from the API's own OpenAPI, valid ones and invalid ones, with a token of both
    scopes: no route answers a 5xx (schemathesis' not_a_server_error)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(rt))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9

    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not (operation.path_parameters or operation.query or operation.body):
            continue  # nothing to send wrong
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            case.call_and_validate(headers=auth(BOTH), checks=[not_a_server_error])

        call()


# --- the command -------------------------------------------------------------------------------------


def test_api_command_refuses_to_start_without_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`erasure api` with no [api.tokens] exits 2 with one line that says so."""
    config = write_config(tmp_path, SYSTEMS)
    code = main(["api", "--config", str(config), "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 2
    assert "api tokens: none configured" in err and err.count("\n") == 1


def test_api_command_serves_over_http(tmp_path: Path) -> None:
    """`erasure api` runs uvicorn on the port given and answers with the store it was configured with."""
    config = write_config(tmp_path, SYSTEMS, top=TOKENS)
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "worker", "api", "--config", str(config),
                                   "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the API did not start: {log.read_text()}")
        answer = httpx.get(f"{base}/v1/requests", headers=auth(READ), timeout=5)
        assert answer.status_code == 200 and answer.json() == []
    finally:
        server.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal so the exit tells how it ended
        assert server.wait(timeout=20) in (0, -signal.SIGTERM)
