"""The status page's routes: sign in and out, the two pages, the certificate downloads; kept out of
the OpenAPI, which is for machines."""

from __future__ import annotations

import json
import time

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from worker.errors import NoSuchRequest
from worker.runtime import Runtime
from worker.surfaces import report
from worker.surfaces.status_page.html import HEADERS, not_found_page, sign_in_page
from worker.surfaces.status_page.pages import listing_page, request_page
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




def router(rt: Runtime) -> APIRouter:
    """The status page's routes over one runtime; kept out of the OpenAPI, which is for machines."""
    routes = APIRouter(include_in_schema=False)
    sessions = Sessions(rt)

    def signed_in(request: Request) -> bool:
        return sessions.valid(request.cookies.get(cookie_name(request)), time.time())

    @routes.get("/")
    def index(request: Request) -> Response:
        return listing_page(rt) if signed_in(request) else sign_in_page("/")

    @routes.get("/requests/{request_id}")
    def one(request: Request, request_id: str) -> Response:
        if not signed_in(request):
            return sign_in_page(f"/requests/{request_id}", 401)
        try:
            return request_page(rt, request_id) if REQUEST_ID.fullmatch(request_id) else not_found_page()
        except NoSuchRequest:
            return not_found_page()

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
