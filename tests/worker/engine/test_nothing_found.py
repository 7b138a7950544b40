"""A request every system found nothing for is said out loud: `nothing_found` in its status, the
list, the API and the certificate, a marker on the DPO page, and one `request.nothing_found`
warning; the certificate names the identifier types looked for, never a value, and never says
anything was erased."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    NO_BATCH_WAIT,
    TAX,
    MakeRuntime,
    api_tokens,
    drain,
    pass_the_retention,
    resolver,
    sign_in,
    stub,
    system_table,
)
from worker.engine import exemptions, fanout, intake, passes, reconcile, settle
from worker.runtime import Runtime
from worker.surfaces import report, views
from worker.surfaces.api import create_app

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

USER_ID, EMAIL = "5550123987", "Nobody.Here@Example.org"  # a subject's values: never shown
READ = "read-only-token"
TOKENS = api_tokens({READ: ["read"]})
MARKER = "nothing found: check the identifier"


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """Two stub systems that hold nothing of anyone's, one by user id and one by email, and a read token."""
    return make_runtime(stub("crm", items=0) + stub("mail", uses=["email"], items=0), top=TOKENS)


@pytest.fixture
def empty(rt: Runtime) -> str:
    """A request by user id and email that every system has looked for and found nothing of."""
    request_id = intake.submit(rt, {"user_id": USER_ID, "email": EMAIL}).request_id
    drain(rt)
    return request_id


def nothing_found_warnings(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `request.nothing_found` events among those logged."""
    return [e for e in events if e["event"] == "request.nothing_found"]


# --- the flag ------------------------------------------------------------------------------------


def test_every_system_not_found_is_nothing_found_in_status_and_list(rt: Runtime, empty: str) -> None:
    """Completed with every system not_found: `nothing_found` is true in the status and in the list."""
    status = views.status(rt, empty)
    assert (status["status"], status["nothing_found"]) == ("completed", True)
    assert {s["status"] for s in status["systems"]} == {"not_found"}
    assert [(r["request_id"], r["nothing_found"]) for r in views.listing(rt)] == [(empty, True)]


def test_one_erased_system_is_not_nothing_found(make_runtime: MakeRuntime) -> None:
    """One system erased something, the other found nothing: `nothing_found` is false everywhere."""
    rt = make_runtime(stub("crm") + stub("mail", uses=["email"], items=0))
    request_id = intake.submit(rt, {"user_id": USER_ID, "email": EMAIL}).request_id
    drain(rt)
    certificate = report.build(rt, request_id)
    assert views.status(rt, request_id)["nothing_found"] is False
    assert [r["nothing_found"] for r in views.listing(rt)] == [False]
    assert (certificate["status"], certificate["nothing_found"]) == ("completed", False)
    assert "Nothing was found" not in report.markdown(certificate)


def test_a_request_not_yet_completed_is_not_nothing_found(rt: Runtime) -> None:
    """Received, its systems still pending: `nothing_found` is false."""
    request_id = intake.submit(rt, {"user_id": USER_ID}).request_id
    assert views.status(rt, request_id)["nothing_found"] is False


def test_not_found_beside_an_exempt_system_is_not_nothing_found(make_runtime: MakeRuntime) -> None:
    """An exempt system kept what it found or was never searched: with one, the request is not nothing found."""
    rt = make_runtime(stub("crm", items=0) + stub("archive", items=0))
    request_id = intake.submit(rt, {"user_id": USER_ID}).request_id
    exemptions.exempt(rt, request_id, "archive", "legal hold: litigation 2026/118")
    drain(rt)
    status = views.status(rt, request_id)
    assert (status["status"], status["nothing_found"]) == ("completed", False)


def test_the_api_answers_nothing_found(rt: Runtime, empty: str) -> None:
    """GET /v1/requests/{id}, /v1/requests and the report carry `nothing_found` true."""
    with TestClient(create_app(rt)) as client:
        headers = {"Authorization": f"Bearer {READ}"}
        assert client.get(f"/v1/requests/{empty}", headers=headers).json()["nothing_found"] is True
        assert [r["nothing_found"] for r in client.get("/v1/requests", headers=headers).json()] == [True]
        assert client.get(f"/v1/requests/{empty}/report", headers=headers).json()["nothing_found"] is True


# --- the certificate -----------------------------------------------------------------------------


def test_certificate_json_names_the_identifier_types_looked_for(rt: Runtime, empty: str) -> None:
    """The JSON has `nothing_found` true and the types looked for, read from the trail after the values are dropped."""
    certificate = report.build(rt, empty)
    assert (certificate["nothing_found"], certificate["identifier_types"]) == (True, ["email", "user_id"])


def test_markdown_says_nothing_was_erased_and_names_the_types_never_the_values(rt: Runtime, empty: str) -> None:
    """The Markdown says nothing was found for the types looked for and nothing erased, asks for the
    identifiers to be checked, and holds no value and no other word of erasure."""
    text = report.markdown(report.build(rt, empty))
    assert ("**Nothing was found for the identifier types `email`, `user_id`: nothing was erased. "
            "Check the identifiers before telling the person the erasure is done.**") in text
    assert "| crm | stub | nothing found | 0 |" in text
    assert text.replace("nothing was erased", "").count("erased") == 0
    assert USER_ID not in text and EMAIL.lower() not in text.lower()


def test_types_are_recorded_for_a_request_started_by_a_resolver(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A resolver that finds no user id for the email: only the email type was looked for, the certificate says."""
    db = sqlite3.connect(tmp_path / "app.db")
    db.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);")
    db.close()
    app_db = (resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email")
              + system_table("app-db", "sql", url=f"sqlite:///{tmp_path}/app.db",
                             tables=[{"name": "users", "where": {"email": "email"}, "action": "delete"}]))
    rt = make_runtime(app_db + stub("mail", uses=["email"], items=0))
    request_id = intake.submit(rt, {"email": EMAIL}).request_id
    drain(rt)
    certificate = report.build(rt, request_id)
    assert (certificate["nothing_found"], certificate["identifier_types"]) == (True, ["email"])


# --- the page ------------------------------------------------------------------------------------


def test_status_page_marks_it_on_the_list_and_the_request_page(rt: Runtime, empty: str) -> None:
    """The list's row and the request's page show the marker; the page says what was looked for."""
    with TestClient(create_app(rt), follow_redirects=False) as client:
        sign_in(client, READ)
        row = client.get("/").text.split(f'<a href="/requests/{empty}">', 1)[1].split("</tr>", 1)[0]
        page = client.get(f"/requests/{empty}").text
    assert MARKER in row and MARKER in page
    assert "Nothing was found for the identifier types <code>email</code>, <code>user_id</code>" in page
    assert USER_ID not in page and EMAIL.lower() not in page.lower()


def test_status_page_has_no_marker_for_a_request_that_erased(make_runtime: MakeRuntime) -> None:
    """A request that erased something is listed and shown without the marker."""
    rt = make_runtime(stub("crm"), top=TOKENS)
    request_id = intake.submit(rt, {"user_id": USER_ID}).request_id
    drain(rt)
    with TestClient(create_app(rt), follow_redirects=False) as client:
        sign_in(client, READ)
        assert MARKER not in client.get("/").text and MARKER not in client.get(f"/requests/{request_id}").text


# --- the warning ---------------------------------------------------------------------------------


def test_the_warning_is_logged_once_with_no_value(
    rt: Runtime, json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """`request.nothing_found` is logged once at warning, with request, subject_ref and systems count,
    and not again when the request's messages are delivered again or the reconciler runs."""
    request_id = intake.submit(rt, {"user_id": USER_ID, "email": EMAIL}).request_id
    drain(rt)
    fanout.start(rt, request_id, redelivered=True)
    for system in ("crm", "mail"):
        passes.erase_system(rt, request_id, system)
    settle.settle(rt, request_id)
    reconcile.reconcile(rt)
    events = json_logs()
    [warning] = nothing_found_warnings(events)
    assert warning["level"] == "warning" and warning["request_id"] == request_id
    assert (warning["subject_ref"], warning["systems"]) == (views.status(rt, request_id)["subject_ref"], 2)
    assert USER_ID not in json.dumps(warning) and "nobody.here" not in json.dumps(warning).lower()


def test_requests_settled_together_each_warn_once(
    make_runtime: MakeRuntime, json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """Three requests started, erased and settled in one pass of a batching system: one warning each."""
    rt = make_runtime(stub("snap", batches=True, items=0), worker=NO_BATCH_WAIT)
    ids = [intake.submit(rt, {"user_id": f"{USER_ID}{n}"}).request_id for n in range(3)]
    drain(rt)
    assert rt.connector("snap").passes == [3]  # type: ignore[attr-defined]
    assert sorted(e["request_id"] for e in nothing_found_warnings(json_logs())) == sorted(ids)


def test_no_warning_for_a_request_that_erased(
    make_runtime: MakeRuntime, json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """A request with one erased system logs no `request.nothing_found`."""
    rt = make_runtime(stub("crm") + stub("mail", uses=["email"], items=0))
    intake.submit(rt, {"user_id": USER_ID, "email": EMAIL})
    drain(rt)
    assert nothing_found_warnings(json_logs()) == []


def test_a_recheck_that_finds_nothing_makes_it_nothing_found_and_warns_once(
    make_runtime: MakeRuntime, json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """Completed with a retained system beside one that found nothing, it is not nothing found; once
    the retention ends and the recheck finds nothing too, it is, with one warning."""
    rt = make_runtime(stub("billing", retain=TAX, items=0) + stub("crm", items=0))
    request_id = intake.submit(rt, {"user_id": USER_ID}).request_id
    drain(rt)
    assert views.status(rt, request_id)["nothing_found"] is False
    later = make_runtime(stub("billing", retain={**TAX, "until": "2020-12-31"}, items=0) + stub("crm", items=0))
    pass_the_retention(later, request_id, "billing")
    assert reconcile.recheck_exemptions(later) == 1
    drain(later)
    reconcile.reconcile(later)
    status = views.status(later, request_id)
    assert (status["status"], status["nothing_found"]) == ("completed", True)
    assert [e["request_id"] for e in nothing_found_warnings(json_logs())] == [request_id]
