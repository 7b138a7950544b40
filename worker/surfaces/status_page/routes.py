"""The status page's routes: sign in and out, the two pages, the certificate downloads, a request's
preview (what its erasure would take, in counts), the forms that settle a manual system's task and that
act on a request (actions.py); kept out of the OpenAPI, which is for machines."""

from __future__ import annotations

import json
import time

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from worker.engine import manual_tasks
from worker.errors import ConnectorError, InputError, NoSuchRequest, RefusedError, one_line
from worker.runtime import Runtime
from worker.surfaces import report
from worker.surfaces.status_page import actions
from worker.surfaces.status_page.html import HEADERS, not_found_page, refused_page, sign_in_page
from worker.surfaces.status_page.pages import listing_page, request_page
from worker.surfaces.status_page.preview import preview_page
from worker.surfaces.status_page.sessions import (
    REQUEST_ID,
    SESSION_SECONDS,
    Sessions,
    cookie_name,
    cross_site,
    read_form,
    safe_next,
)

log = structlog.get_logger("erasure.status_page")
TASK_FORM_FIELDS = 8  # csrf, outcome, items, evidence, by, and room for a browser's extra


def router(rt: Runtime) -> APIRouter:
    """The status page's routes over one runtime; kept out of the OpenAPI, which is for machines."""
    routes = APIRouter(include_in_schema=False)
    sessions = Sessions(rt)

    def signed_in(request: Request) -> bool:
        return sessions.valid(request.cookies.get(cookie_name(request)), time.time())

    def operator_csrf(request: Request, scopes: frozenset[str]) -> str | None:
        """The session's CSRF token for its forms, if its token may settle tasks."""
        return sessions.csrf(request.cookies[cookie_name(request)]) if "operate" in scopes else None

    @routes.get("/")
    def index(request: Request) -> Response:
        scopes = sessions.scopes(request.cookies.get(cookie_name(request)), time.time())
        return sign_in_page("/") if scopes is None else listing_page(rt, operator_csrf(request, scopes))

    async def operator_form(request: Request, fields: int) -> tuple[dict[str, str], str, str] | Response:
        """A POSTed form, the SHA-256 of its session's token and the session's CSRF token, if the form
        carries that CSRF token and the token has `operate`; else the answer that refuses it, nothing changed."""
        cookie = request.cookies.get(cookie_name(request))
        held = sessions.holder(cookie, time.time())
        if cookie is None or held is None:
            return sign_in_page("/", 401)
        form = await read_form(request, fields)
        if cross_site(request) or form is None or not sessions.csrf_ok(cookie, form.get("csrf")):
            log.warning("status_page.form_refused", why="no or wrong CSRF token")
            return refused_page("The form did not come from this page, or its session has changed: "
                                "reload the page and try again.")
        if "operate" not in held[1]:
            log.warning("status_page.form_refused", why="no operate scope")
            return refused_page("This session's token lacks the operate scope that this form needs.")
        return form, held[0], sessions.csrf(cookie)

    @routes.post("/requests/{request_id}/tasks/{system}")
    async def settle_task(request: Request, request_id: str, system: str) -> Response:
        """A manual system's task settled from its form: only with the session's CSRF token and a token
        that has `operate`; anything else is refused and changes nothing."""
        gate = await operator_form(request, TASK_FORM_FIELDS)
        if isinstance(gate, Response):
            return gate
        form, _, csrf = gate
        if not REQUEST_ID.fullmatch(request_id):
            return not_found_page()
        try:
            outcome, evidence, by = form.get("outcome"), form.get("evidence", ""), form.get("by", "")
            if outcome == "done":
                await run_in_threadpool(manual_tasks.done, rt, request_id, system, _items(form.get("items")),
                                        evidence, by)
            elif outcome == "not_found":
                await run_in_threadpool(manual_tasks.not_found, rt, request_id, system, evidence, by)
            else:
                raise InputError("outcome: press Done or Not found")
        except NoSuchRequest:
            return not_found_page()
        except (InputError, RefusedError) as exc:
            status = 422 if isinstance(exc, InputError) else 409
            why = f"{system[:100]} of {request_id}: not recorded: {exc}"
            return await run_in_threadpool(listing_page, rt, csrf, why, status)
        return RedirectResponse("/#tasks", 303, headers=HEADERS)

    @routes.post("/requests/{request_id}/{action}")
    async def act(request: Request, request_id: str, action: str) -> Response:
        """An action on a request from its form (actions.py): only with the session's CSRF token and a token
        that has `operate`; a refused one is the request's page with one line saying why, nothing changed;
        a done one redirects to the request's page, which shows the result."""
        gate = await operator_form(request, actions.FORM_FIELDS)
        if isinstance(gate, Response):
            return gate
        form, token_hash, csrf = gate
        if action not in actions.DONE or not REQUEST_ID.fullmatch(request_id):
            return not_found_page()
        who = actions.by(rt, token_hash)
        try:
            try:
                await run_in_threadpool(actions.run, rt, action, request_id, form, who)
            except (InputError, RefusedError) as exc:  # bad input may be found before the request is looked up
                log.info("status_page.action_refused", action=action, request_id=request_id, by=who,
                         why=type(exc).__name__)
                return await run_in_threadpool(request_page, rt, request_id, csrf, None,
                                               one_line(exc).removeprefix("--"),
                                               422 if isinstance(exc, InputError) else 409)
        except NoSuchRequest:
            return not_found_page()
        log.info("status_page.acted", action=action, request_id=request_id, by=who)
        return RedirectResponse(f"/requests/{request_id}?done={action}", 303, headers=HEADERS)

    @routes.get("/requests/{request_id}")
    def one(request: Request, request_id: str) -> Response:
        scopes = sessions.scopes(request.cookies.get(cookie_name(request)), time.time())
        if scopes is None:
            return sign_in_page(f"/requests/{request_id}", 401)
        if not REQUEST_ID.fullmatch(request_id):
            return not_found_page()
        try:
            return request_page(rt, request_id, operator_csrf(request, scopes),
                                actions.DONE.get(request.query_params.get("done", "")))
        except NoSuchRequest:
            return not_found_page()

    @routes.get("/requests/{request_id}/preview")
    def preview(request: Request, request_id: str) -> Response:
        """What the request's erasure would take now, in counts (a received or in-progress request)."""
        if not signed_in(request):
            return sign_in_page(f"/requests/{request_id}", 401)
        if not REQUEST_ID.fullmatch(request_id):
            return not_found_page()
        try:
            return preview_page(rt, request_id)
        except NoSuchRequest:
            return not_found_page()
        except RefusedError as exc:
            return refused_page(str(exc), 409)
        except ConnectorError as exc:  # a resolver's system did not answer
            return refused_page(one_line(exc), 502)

    @routes.get("/requests/{request_id}/certificate.{form}")
    def certificate(request: Request, request_id: str, form: str) -> Response:
        if not signed_in(request):
            return sign_in_page(f"/requests/{request_id}", 401)
        if form not in ("md", "json") or not REQUEST_ID.fullmatch(request_id):
            return not_found_page()
        try:
            cert = report.build(rt, request_id)
        except NoSuchRequest:
            return not_found_page()
        text, media = ((report.markdown(cert), "text/markdown; charset=utf-8") if form == "md"
                       else (json.dumps(cert, indent=2), "application/json"))
        disposition = f'attachment; filename="certificate-{request_id}.{form}"'
        return Response(text, media_type=media, headers={**HEADERS, "Content-Disposition": disposition})

    @routes.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await read_form(request)
        if cross_site(request) or form is None:
            return sign_in_page("/", 400, "The form could not be read; sign in from this page.")
        token, next_path = form.get("token", "").strip(), safe_next(form.get("next"))
        scopes = request.app.state.tokens.scopes(token) if token else None
        if scopes is None:
            log.warning("status_page.sign_in_refused", why="unknown token")
            return sign_in_page(next_path, 401, "That token is not known. Check it and try again.")
        if "read" not in scopes:
            log.warning("status_page.sign_in_refused", why="no read scope")
            return sign_in_page(next_path, 403, "That token lacks the read scope this page needs.")
        answer = RedirectResponse(next_path, 303, headers=HEADERS)
        answer.set_cookie(cookie_name(request), sessions.issue(token, time.time()), max_age=SESSION_SECONDS,
                          path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        log.info("status_page.signed_in")
        return answer

    @routes.post("/sign-out")
    def sign_out(request: Request) -> Response:
        answer = RedirectResponse("/", 303, headers=HEADERS)
        answer.delete_cookie(cookie_name(request), path="/", httponly=True, samesite="strict",
                             secure=request.url.scheme == "https")
        return answer

    return routes


def _items(text: str | None) -> int:
    """The form's item count as a number; InputError if it is none."""
    text = (text or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise InputError("items: how many items were erased, a whole number of at least 1")
    return int(text)
