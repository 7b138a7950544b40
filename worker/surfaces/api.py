"""The HTTP API of the contract, for support tooling and DPO dashboards. Tokens are known only by
their SHA-256 and carry scopes; a body is capped before it is parsed; every error is an RFC 9457
problem whose detail never repeats an identifier's value. Input is validated by `worker.engine.intake`,
the same code as the CLI and the `erasure.submit` task, so the three accept exactly the same."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from worker.config import Config
from worker.engine import explain, intake, locate
from worker.errors import ConnectorError, InputError, NoSuchRequest, one_line
from worker.identifiers import MAX_VALUE_LENGTH
from worker.runtime import Runtime
from worker.store.engine import StoreUnavailable
from worker.store.models import RequestStatus, Scope
from worker.surfaces import metrics, report, views
from worker.surfaces.status_page.routes import router as status_page_router

PROBLEM = "application/problem+json"
REQUEST_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
SUBMIT_FIELDS = ("subject", "requested_by", "idempotency_key", "scope")  # intake.submit's, in its order
LOCATE_FIELDS = ("subject", "scope")  # locate.locate's, in its order
TokenScope = Literal["submit", "read", "operate"]  # operate: the DPO page's tasks and actions; reads too
RequestId = Annotated[str, Path(pattern=REQUEST_ID)]


class Problem(Exception):
    """An answer other than success, sent as an RFC 9457 problem."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, dict(headers or {})


class ProblemBody(BaseModel):
    """An RFC 9457 problem."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


class SubmittedBody(BaseModel):
    """The `submit --json` object."""

    request_id: str
    status: str
    duplicate: bool


def problem_response(problem: Problem) -> JSONResponse:
    """A problem as `application/problem+json`; `about:blank` titles are the status's phrase."""
    body = ProblemBody(title=HTTPStatus(problem.status).phrase, status=problem.status, detail=problem.detail)
    return JSONResponse(body.model_dump(), problem.status, problem.headers, media_type=PROBLEM)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of the problems a route may answer."""
    schema = {"$ref": "#/components/schemas/ProblemBody"}
    return {s: {"description": HTTPStatus(s).phrase, "content": {PROBLEM: {"schema": schema}}} for s in statuses}


class Tokens:
    """The configured tokens, by SHA-256; a token is checked against every one in constant time."""

    def __init__(self, hashes: Mapping[str, frozenset[str]]) -> None:
        self._hashes = [(digest.encode(), scopes) for digest, scopes in hashes.items()]

    def scopes(self, token: str) -> frozenset[str] | None:
        """The scopes of a token, or None if it is not configured."""
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        found = None
        for known, scopes in self._hashes:  # no early exit: the time does not tell which one matched
            if hmac.compare_digest(digest, known):
                found = scopes
        return found


bearer = HTTPBearer(auto_error=False, description="A token configured in [api.tokens] by its SHA-256.")


def need(scope: TokenScope) -> Any:
    """A dependency that lets a request through only with a token that has this scope."""

    def check(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if credentials is None:
            raise Problem(401, "send Authorization: Bearer TOKEN", {"WWW-Authenticate": "Bearer"})
        scopes = request.app.state.tokens.scopes(credentials.credentials)
        if scopes is None:
            raise Problem(401, "unknown token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if scope not in scopes:
            raise Problem(403, f"this token lacks the scope {scope}",
                          {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})

    return Depends(check)


async def read_body(request: Request, cap: int) -> bytes:
    """The body, refused with 413 past `cap` bytes, whether it declares its length or streams."""
    declared = request.headers.get("content-length")
    # ASCII digits only: "²" is a digit to str.isdigit() and a ValueError to int()
    if declared is not None and (not (declared.isascii() and declared.isdigit()) or int(declared) > cap):
        raise Problem(413, f"the body may hold at most {cap} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise Problem(413, f"the body may hold at most {cap} bytes")
    return bytes(body)


def json_object(body: bytes, allowed: Sequence[str] = SUBMIT_FIELDS) -> dict[str, Any]:
    """A body as a JSON object with only the fields a request takes; a problem says what is wrong."""
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        raise Problem(422, "the body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise Problem(422, "the body must be a JSON object")
    if set(fields) - set(allowed):
        raise Problem(422, f"unknown field(s): a request takes {', '.join(allowed)}")
    return fields


def submit_schema(config: Config) -> dict[str, Any]:
    """The OpenAPI schema of a request body, with the identifier types of this config."""
    types = {}
    for name, kind in config.identifiers.items():
        value: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_LENGTH}
        if kind.normalize == "none":  # the pattern is checked after normalizing
            value["pattern"] = kind.pattern.pattern
        types[name] = {"anyOf": [value, {"type": "array", "minItems": 1, "items": value}]}
    free_text = {"type": "string", "minLength": 1, "maxLength": intake.MAX_TEXT}
    return {
        "type": "object", "required": ["subject"], "additionalProperties": False,
        "properties": {
            "subject": {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": types},
            "requested_by": free_text, "idempotency_key": free_text,
            "scope": {"type": "string", "enum": [s.value for s in Scope], "default": Scope.ALL.value,
                      "description": '"training": an objection to training use (Art. 21), which erases only '
                                     "the systems marked training and skips the others"},
        },
    }


def add_handlers(app: FastAPI) -> None:
    """Every error as a problem; the store being down is 503, so a client knows to try again."""

    def handle(status: int, detail: Callable[[Any], str]) -> Callable[[Request, Any], Any]:
        async def handler(request: Request, exc: Any) -> JSONResponse:
            return problem_response(Problem(status, detail(exc)))

        return handler

    async def on_problem(request: Request, exc: Any) -> JSONResponse:
        return problem_response(exc)

    async def on_http(request: Request, exc: Any) -> JSONResponse:  # no such route, method not allowed
        return problem_response(Problem(exc.status_code, str(exc.detail), exc.headers))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, handle(422, validation_detail))
    app.add_exception_handler(InputError, handle(422, str))
    app.add_exception_handler(NoSuchRequest, handle(404, lambda exc: "no such request"))
    app.add_exception_handler(intake.NotEnqueued, handle(503, str))
    for down in (StoreUnavailable, OperationalError):
        app.add_exception_handler(down, handle(503, lambda exc: "the store did not answer; try again"))


def validation_detail(exc: RequestValidationError) -> str:
    """Where a query or path parameter is wrong and why, without the value that was sent."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:2]) or "request"
    return f"{where}: {first['msg']}"


def create_app(rt: Runtime) -> FastAPI:
    """The API over one runtime (its config's tokens, its store and its dispatch)."""
    app = FastAPI(title="erasure-worker", version="1", summary="Right-to-erasure requests, their proof and metrics.")
    app.state.tokens = Tokens(rt.config.api.tokens)
    registry = metrics.registry(rt)
    cap = rt.config.api.max_body_bytes
    add_handlers(app)
    app.include_router(status_page_router(rt))  # the DPO status page at /, for browsers

    @app.post("/v1/requests", status_code=202, dependencies=[need("submit")],
              responses=problems(401, 403, 413, 422, 503),
              openapi_extra={"requestBody": {"required": True,
                                             "content": {"application/json": {"schema": submit_schema(rt.config)}}}})
    async def submit(request: Request) -> SubmittedBody:
        """Validate, record and enqueue an erasure request; a known idempotency key answers the first."""
        fields = json_object(await read_body(request, cap))
        done = await run_in_threadpool(intake.submit, rt, *(fields.get(name) for name in SUBMIT_FIELDS))
        return SubmittedBody(**done.to_json())

    locate_body = submit_schema(rt.config)
    locate_body["properties"] = {k: v for k, v in locate_body["properties"].items() if k in LOCATE_FIELDS}

    @app.post("/v1/locate", dependencies=[need("read")], responses=problems(401, 403, 413, 422, 502, 503),
              openapi_extra={"requestBody": {"required": True,
                                             "content": {"application/json": {"schema": locate_body}}}})
    async def locate_subject(request: Request) -> dict[str, Any]:
        """What an erasure of a subject would take in each system, and the models it would flag: counts,
        never values; nothing is changed or recorded but an audit event."""
        fields = json_object(await read_body(request, cap), LOCATE_FIELDS)
        try:
            located = await run_in_threadpool(locate.locate, rt, *(fields.get(name) for name in LOCATE_FIELDS))
        except ConnectorError as exc:  # a resolver's system did not answer
            raise Problem(502, one_line(exc)) from exc
        return located.to_json()

    @app.get("/v1/requests/{request_id}", dependencies=[need("read")], responses=problems(401, 403, 404, 422))
    def status(request_id: RequestId) -> dict[str, Any]:
        """One request's status object."""
        return views.status(rt, request_id)

    @app.get("/v1/requests", dependencies=[need("read")], responses=problems(401, 403, 422))
    def listing(status: RequestStatus | None = None, overdue: bool = False,
                scope: Scope | None = None) -> list[dict[str, Any]]:
        """Requests, newest first, by status, past their deadline or by scope."""
        return views.listing(rt, status, overdue, scope=scope)

    @app.get("/v1/requests/{request_id}/report", dependencies=[need("read")],
             responses=problems(401, 403, 404, 422))
    def certificate(request_id: RequestId) -> dict[str, Any]:
        """The certificate of erasure of one request."""
        return dict(report.build(rt, request_id))

    @app.get("/v1/requests/{request_id}/explain", dependencies=[need("read")], responses=problems(401, 403, 404, 422))
    def explained(request_id: RequestId) -> dict[str, Any]:
        """One request's story, oldest first, and what it waits for now and what to do (`erasure explain`)."""
        return explain.explain(rt, request_id).to_json()

    @app.get("/v1/models", dependencies=[need("read")], responses=problems(401, 403, 422))
    def models(flagged: bool = False) -> list[dict[str, Any]]:
        """Model versions and their flags."""
        return views.models(rt, flagged)

    @app.get("/metrics", dependencies=[need("read")], response_class=Response, responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}, **problems(401, 403, 503)})
    def scrape() -> Response:
        """Prometheus metrics, read from the store now."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", responses=problems(503))
    def healthz() -> dict[str, str]:
        """Live when the store answers."""
        with rt.transaction() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok"}

    original = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with the problem that `problems` refers to by hand."""
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["ProblemBody"] = ProblemBody.model_json_schema()
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

