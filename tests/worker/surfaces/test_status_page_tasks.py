"""The DPO status page's open tasks of manual systems: listed for every session; settled by a form only
in a session whose token has `operate`, and only with that session's CSRF token (anything else is 403
and changes nothing); an `operate` token reads as a `read` one does; and the whole of it in Chromium."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator

import pytest

from tests.helpers import ROOT, MakeRuntime, Recorder, api_tokens, drain, sign_in, stub, system_table
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, serving
from worker.engine import intake, manual_tasks
from worker.runtime import Runtime
from worker.surfaces import views
from worker.surfaces.api import create_app
from worker.surfaces.status_page import routes
from worker.surfaces.status_page.sessions import Sessions

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

READ, OPERATE, SUBMIT = "read-only-token", "operate-only-token", "submit-only-token"
INSTRUCTIONS = "Search the customer in the helpdesk; delete their tickets <b>and</b> the user."
EMAIL = "zed.secret@example.com"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """A stub system and a manual one; a read, an operate and a submit token."""
    return make_runtime(stub("crm") + system_table("desk", "manual", uses=["email"], instructions=INSTRUCTIONS),
                        top=api_tokens({READ: ["read"], OPERATE: ["operate"], SUBMIT: ["submit"]}))


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The API (and so the page) over that runtime, in-process, following no redirect by itself."""
    with TestClient(create_app(rt), follow_redirects=False) as made:
        yield made


@pytest.fixture
def request_id(rt: Runtime) -> str:
    """A request whose crm is erased and whose desk is an open task."""
    found = intake.submit(rt, {"user_id": "4242", "email": EMAIL}).request_id
    drain(rt)
    return found


def desk(rt: Runtime, request_id: str) -> tuple[str, int | None]:
    """The manual system's status and items."""
    shown = views.status(rt, request_id)["systems"][1]
    return shown["status"], shown["items_erased"]


def tasks_section(page: str) -> str:
    """The open tasks' section of the list page."""
    return page.split('<h2 id="tasks">', 1)[1].split("</section>", 1)[0]


def settle(client: TestClient, request_id: str, **fields: str) -> object:
    """Post a task's form as a browser would."""
    return client.post(f"/requests/{request_id}/tasks/desk", data=fields)


def test_every_session_sees_the_open_tasks_and_only_operate_gets_forms(
        client: TestClient, request_id: str) -> None:
    """A read session lists the task (request, system, instructions escaped) with no form; an operate
    session gets a form with the session's CSRF token, a label for every field; no value on either."""
    sign_in(client, READ)
    read_view = tasks_section(client.get("/").text)
    assert request_id in read_view and "desk" in read_view and "&lt;b&gt;and&lt;/b&gt;" in read_view
    assert "<form" not in read_view and "operate" in read_view
    sign_in(client, OPERATE)
    page = client.get("/").text
    section = tasks_section(page)
    assert f'action="/requests/{request_id}/tasks/desk"' in section and CSRF.search(section)
    fields = re.findall(r'<input id="([^"]+)"', section)
    assert fields and all(f'<label for="{field}">' in section for field in fields)
    assert EMAIL not in page and "4242" not in page


def test_an_operate_token_reads_but_does_not_submit(client: TestClient) -> None:
    """`operate` carries `read`: it signs in to the page and reads the API; it cannot submit."""
    assert sign_in(client, OPERATE).status_code == 303
    bearer = {"Authorization": f"Bearer {OPERATE}"}
    assert client.get("/v1/requests", headers=bearer).status_code == 200
    assert client.post("/v1/requests", json={"subject": {"user_id": "1"}}, headers=bearer).status_code == 403


def test_the_form_with_the_sessions_csrf_token_settles_the_task(
        client: TestClient, rt: Runtime, request_id: str) -> None:
    """Done from the form: 303 back to the tasks, the system erased with its items, the request completed,
    the task gone from the list."""
    sign_in(client, OPERATE)
    token = CSRF.findall(client.get("/").text)[0]
    answer = settle(client, request_id, csrf=token, outcome="done", items="2",
                    evidence="deleted 2 tickets and the user", by="Ana (support)")
    assert (answer.status_code, answer.headers["location"]) == (303, "/#tasks")  # type: ignore[attr-defined]
    assert desk(rt, request_id) == ("erased", 2) and views.status(rt, request_id)["status"] == "completed"
    assert "No open task." in tasks_section(client.get("/").text)


def test_not_found_from_the_form(client: TestClient, rt: Runtime, request_id: str) -> None:
    """Not found from the form settles the task not_found; the items field is not needed."""
    sign_in(client, OPERATE)
    token = CSRF.findall(client.get("/").text)[0]
    settle(client, request_id, csrf=token, outcome="not_found", items="", evidence="no such user", by="Ana")
    assert desk(rt, request_id) == ("not_found", 0)


@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "read-session"])
def test_a_post_without_or_with_a_wrong_csrf_token_is_403_and_changes_nothing(
        client: TestClient, rt: Runtime, request_id: str, monkeypatch: pytest.MonkeyPatch, csrf: str | None) -> None:
    """No CSRF token, an empty or made-up one, or another session's: 403, logged, the task still open."""
    recorder = Recorder()
    monkeypatch.setattr(routes, "log", recorder)
    other = Sessions(rt).csrf(sign_in(client, READ).cookies["erasure-session"])  # type: ignore[attr-defined]
    sign_in(client, OPERATE)
    fields = {"outcome": "done", "items": "1", "evidence": "deleted", "by": "Ana"}
    if csrf is not None:
        fields["csrf"] = other if csrf == "read-session" else csrf
    answer = settle(client, request_id, **fields)
    assert answer.status_code == 403 and "reload the page" in answer.text  # type: ignore[attr-defined]
    assert desk(rt, request_id) == ("pending", None)
    assert recorder.named("status_page.form_refused") == [{"why": "no or wrong CSRF token"}]


def test_a_form_from_another_site_is_403(client: TestClient, rt: Runtime, request_id: str) -> None:
    """Even with the right CSRF token, a POST a browser says came from another site is refused."""
    sign_in(client, OPERATE)
    token = CSRF.findall(client.get("/").text)[0]
    answer = client.post(f"/requests/{request_id}/tasks/desk", headers={"Sec-Fetch-Site": "cross-site"},
                         data={"csrf": token, "outcome": "done", "items": "1", "evidence": "deleted", "by": "Ana"})
    assert answer.status_code == 403 and desk(rt, request_id) == ("pending", None)


def test_a_read_session_cannot_settle_even_with_its_own_csrf_token(
        client: TestClient, rt: Runtime, request_id: str) -> None:
    """A read session's own CSRF token is valid, but its token lacks operate: 403, nothing changed."""
    cookie = sign_in(client, READ).cookies["erasure-session"]  # type: ignore[attr-defined]
    answer = settle(client, request_id, csrf=Sessions(rt).csrf(cookie), outcome="done", items="1",
                    evidence="deleted", by="Ana")
    assert answer.status_code == 403 and "operate scope" in answer.text  # type: ignore[attr-defined]
    assert desk(rt, request_id) == ("pending", None)


def test_without_a_session_a_post_is_the_sign_in_form(client: TestClient, rt: Runtime, request_id: str) -> None:
    """No session: 401 and the sign-in form; nothing changed."""
    answer = settle(client, request_id, csrf="0" * 64, outcome="done", items="1", evidence="x", by="Ana")
    assert answer.status_code == 401 and 'action="/sign-in"' in answer.text  # type: ignore[attr-defined]
    assert desk(rt, request_id) == ("pending", None)


@pytest.mark.parametrize(("fields", "status", "says"), [
    ({"outcome": "done", "items": "2", "evidence": f"deleted {EMAIL.upper()}", "by": "Ana"}, 422,
     "evidence: it holds the subject&#x27;s email"),
    ({"outcome": "done", "items": "", "evidence": "deleted", "by": "Ana"}, 422, "items: how many"),
    ({"outcome": "done", "items": "1", "evidence": "deleted", "by": ""}, 422, "by: required"),
    ({"outcome": "erase-everything", "items": "1", "evidence": "x", "by": "Ana"}, 422, "Done or Not found"),
])
def test_bad_form_input_is_shown_and_records_nothing(
        client: TestClient, rt: Runtime, request_id: str, fields: dict[str, str], status: int, says: str) -> None:
    """Bad input: the list again with an alert saying why (never the value), the task still open."""
    sign_in(client, OPERATE)
    token = CSRF.findall(client.get("/").text)[0]
    answer = settle(client, request_id, csrf=token, **fields)
    assert answer.status_code == status and 'role="alert"' in answer.text  # type: ignore[attr-defined]
    assert says in answer.text and EMAIL not in answer.text.lower()  # type: ignore[attr-defined]
    assert desk(rt, request_id) == ("pending", None)


def test_a_task_settled_meanwhile_is_409(client: TestClient, rt: Runtime, request_id: str) -> None:
    """A form posted after someone else settled the task: 409, saying it is no open task."""
    sign_in(client, OPERATE)
    token = CSRF.findall(client.get("/").text)[0]
    manual_tasks.not_found(rt, request_id, "desk", "looked, nothing", "Bo")
    answer = settle(client, request_id, csrf=token, outcome="done", items="1", evidence="deleted", by="Ana")
    assert answer.status_code == 409 and "no open task" in answer.text  # type: ignore[attr-defined]
    assert desk(rt, request_id) == ("not_found", 0)


# --- in a browser --------------------------------------------------------------------------------


@pytest.fixture
def served(rt: Runtime) -> Iterator[str]:
    """The API served on a free loopback port, in a thread; its base URL."""
    with serving(create_app(rt)) as url:
        yield url


def test_a_person_settles_a_task_in_chromium(rt: Runtime, request_id: str, served: str) -> None:
    """In headless Chromium: an operate token signs in, the task's form is filled and Done clicked; the
    list then has no open task and the request is completed; a screenshot is kept in test-artifacts/."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        expect = sync_playwright = None
    if not CHROMIUM.exists() or sync_playwright is None:  # as the status page's own browser test does
        missing = f"{CHROMIUM} (apt-get install chromium) or playwright is not installed"
        pytest.fail(missing) if os.environ.get("ERASURE_TEST_SERVICES") == "require" else pytest.skip(missing)

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 800})
            page.goto(served + "/")
            page.get_by_label("API token with the read scope").fill(OPERATE)
            page.get_by_role("button", name="Sign in").click()
            row = page.locator("section[aria-labelledby=tasks] tbody tr")
            expect(row).to_contain_text(request_id)
            page.get_by_label("Items erased").fill("2")
            page.get_by_label("Evidence: what was done").fill("deleted 2 tickets and the user")
            page.get_by_label("By").fill("Ana (support)")
            page.screenshot(path=str(artifacts / "status-page-task.png"), full_page=True)
            page.get_by_role("button", name="Done").click()
            expect(page.locator("section[aria-labelledby=tasks]")).to_contain_text("No open task.")
        finally:
            browser.close()
    assert desk(rt, request_id) == ("erased", 2) and views.status(rt, request_id)["status"] == "completed"
