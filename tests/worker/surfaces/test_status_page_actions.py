"""The DPO status page's actions on a request, for a session whose token has `operate`: retry a failed
request, extend its deadline once, exempt a system, move a model flag; each through the engine function
its command calls, audited with the token that did it, then a redirect to the request's page. Anything
refused (the engine's rules, bad input, a bad CSRF token, a read-only session, an unknown id) changes
nothing; and a DPO retrying a failed request in headless Chromium."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from connectors.stub import StubConnector
from tests.helpers import ROOT, MakeRuntime, api_tokens, drain, sign_in, stub
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, serving
from worker.engine import intake
from worker.runtime import Runtime
from worker.store.models import AuditEvent, Lineage, ModelFlag, Request, utcnow
from worker.surfaces import views
from worker.surfaces.api import create_app
from worker.surfaces.status_page.sessions import Sessions

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

READ, OPERATE, UNNAMED = "read-only-token", "operate-only-token", "an-unnamed-operate-token"
BY = "dpo-anna"  # the operate token's name in [api.tokens], which the audit trail records as who acted
USER_ID = "4242991377"  # the subject's value: never on a page
NO_SUCH = "00000000-0000-4000-8000-000000000000"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
ACTION_FIELDS = {  # a valid form of each action (on the `failed` request)
    "retry": {},
    "extend": {"months": "1", "reason": "the archive holds many records to check"},
    "exempt": {"system": "billing", "reason": "kept for tax law, §147 AO, until 2032"},
    "flag": {"model": "recsys", "version": "7", "to": "acknowledged", "reason": "retraining is planned"},
}


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """A stub system that works and one that fails for good; a read and an operate token."""
    named = f'"{hashlib.sha256(OPERATE.encode()).hexdigest()}" = {{ scopes = ["operate"], name = "{BY}" }}\n'
    return make_runtime(stub("crm") + stub("billing", fail_permanently=True),
                        top=api_tokens({READ: ["read"], UNNAMED: ["operate"]}) + named)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The API (and so the page) over that runtime, in-process, following no redirect by itself."""
    with TestClient(create_app(rt), follow_redirects=False) as made:
        yield made


@pytest.fixture
def failed(rt: Runtime) -> str:
    """A request whose crm is erased and whose billing failed for good, so the request failed; a model
    version trained on a snapshot that held the subject is flagged for it (open)."""
    request_id = intake.submit(rt, {"user_id": USER_ID}).request_id
    drain(rt)
    now = utcnow()
    with rt.transaction() as session:
        session.add(Lineage(model="recsys", version="7", snapshot="clicks:2026-11-01", recorded_at=now,
                            trained_at=now))
        session.add(ModelFlag(model="recsys", version="7", request_id=request_id, snapshots=["clicks:2026-11-01"],
                              flagged_at=now))
    assert views.status(rt, request_id)["status"] == "failed"
    return request_id


def fixed(rt: Runtime, system: str) -> None:
    """The failing system repaired: its stub connector swapped for one that erases."""
    rt._connectors[system] = StubConnector(dataclasses.replace(rt.connector(system).config, fail_permanently=False))


def csrf_of(client: TestClient, request_id: str) -> str:
    """The CSRF token of the signed-in session, from the request's page."""
    return CSRF.findall(client.get(f"/requests/{request_id}").text)[0]


def act(client: TestClient, request_id: str, action: str, **fields: str) -> Any:
    """Post an action's form as a browser would."""
    return client.post(f"/requests/{request_id}/{action}", data=fields)


def operate(client: TestClient, request_id: str, action: str, **fields: str) -> Any:
    """Sign in with the operate token and post an action's form with the session's CSRF token."""
    sign_in(client, OPERATE)
    return act(client, request_id, action, csrf=csrf_of(client, request_id), **fields)


def state(rt: Runtime, request_id: str) -> tuple[dict[str, Any], int, int]:
    """Everything an action could change: the request's status object (systems, deadline, flags), the
    number of audit events, and the messages waiting to be sent."""
    with rt.transaction() as session:
        events = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return views.status(rt, request_id), events, len(rt.dispatch.sent)  # type: ignore[attr-defined]


def audited(rt: Runtime, request_id: str, type_: str) -> list[dict[str, Any]]:
    """The data of a request's audit events of one type."""
    with rt.transaction() as session:
        return [e.data for e in session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id,
                                                                         AuditEvent.type == type_))]


def act_section(page: str) -> str:
    """The actions' section of a request's page."""
    return page.split('<h2 id="act">', 1)[1].split("</section>", 1)[0]


def refused_line(page: str) -> str:
    """The one line a refused action shows."""
    found = re.findall(r'<p class="error" role="alert" id="result">(.*?)</p>', page)
    assert len(found) == 1 and "\n" not in found[0]
    return found[0]


# --- who sees what -------------------------------------------------------------------------------


def test_an_operate_session_gets_the_forms_of_what_the_request_allows(client: TestClient, failed: str) -> None:
    """On a failed request: retry, extend (1 or 2 months), exempt (the failed system only, not the erased
    one), and the open flag's moves (acknowledged or waived, not retrained); each form has the session's
    CSRF token and a label for every field; no identifier value."""
    sign_in(client, OPERATE)
    page = client.get(f"/requests/{failed}").text
    section = act_section(page)
    actions = re.findall(rf'<form class="task act" method="post" action="/requests/{failed}/(\w+)">', section)
    assert actions == ["retry", "extend", "exempt", "flag"] and len(CSRF.findall(section)) == 4
    assert '<option value="billing">' in section and '<option value="crm">' not in section
    assert re.findall(r'<select id="flag-to-0" name="to">(.*?)</select>', section) == [
        '<option value="acknowledged">acknowledged</option><option value="waived">waived</option>']
    fields = re.findall(r'<(?:input|select) id="([^"]+)"', section)
    assert fields and all(f'<label for="{field}">' in section for field in fields)
    assert USER_ID not in page


def test_a_read_session_sees_no_form_and_no_button(client: TestClient, failed: str) -> None:
    """A read-only session's request page has no action form and no button but signing out."""
    sign_in(client, READ)
    page = client.get(f"/requests/{failed}").text
    assert "operate" in act_section(page) and "<form" not in act_section(page)
    assert re.findall(r"<form[^>]*>", page) == ['<form method="post" action="/sign-out">']
    assert page.count("<button") == 1 and not CSRF.search(page)


def test_a_completed_request_offers_no_action(client: TestClient, rt: Runtime, failed: str) -> None:
    """Once completed and its flag final, nothing is left to do: the section says so, with no form."""
    fixed(rt, "billing")
    assert operate(client, failed, "retry").status_code == 303
    drain(rt)
    csrf = csrf_of(client, failed)
    act(client, failed, "flag", csrf=csrf, model="recsys", version="7", to="waived", reason="not used any more")
    assert "no action left" in act_section(client.get(f"/requests/{failed}").text)


# --- each action ---------------------------------------------------------------------------------


def test_retry_from_the_page_reruns_the_failed_system_and_the_request_completes(
        client: TestClient, rt: Runtime, failed: str) -> None:
    """Retry: 303 to the request's page, which says so; the failed system is sent again (audited with the
    token), and once the worker has run it the page shows the request completed."""
    fixed(rt, "billing")
    answer = operate(client, failed, "retry")
    assert (answer.status_code, answer.headers["location"]) == (303, f"/requests/{failed}?done=retry")
    assert audited(rt, failed, "request.retried") == [{"systems": ["billing"], "by": BY}]
    assert "Retried: the failed systems were sent again" in client.get(answer.headers["location"]).text
    drain(rt)
    assert views.status(rt, failed)["status"] == "completed"
    assert 'class="badge ok">completed</span>' in client.get(f"/requests/{failed}").text


def test_a_token_without_a_name_is_recorded_by_its_hash_prefix(client: TestClient, rt: Runtime,
                                                                 failed: str) -> None:
    """An operate token given only its scopes is named in the audit trail by the first 12 hex digits of its
    SHA-256, as config errors name it."""
    sign_in(client, UNNAMED)
    page = client.get(f"/requests/{failed}")
    client.post(f"/requests/{failed}/retry", data={"csrf": CSRF.search(page.text)[1]}, follow_redirects=False)

    prefix = hashlib.sha256(UNNAMED.encode()).hexdigest()[:12]
    assert audited(rt, failed, "request.retried")[0]["by"] == f"token {prefix}"


def test_extend_from_the_page_moves_the_deadline_once(client: TestClient, rt: Runtime, failed: str) -> None:
    """Extend by two months: the deadline moves as `erasure extend` moves it, with the reason and who."""
    before = views.status(rt, failed)["deadline"]
    answer = operate(client, failed, "extend", months="2", reason="the archive holds many records to check")
    assert answer.status_code == 303
    extended = views.status(rt, failed)["extended"]
    assert (extended["months"], extended["original_deadline"]) == (2, before)
    assert extended["reason"] == "the archive holds many records to check"
    assert [(e["months"], e["by"]) for e in audited(rt, failed, "request.extended")] == [(2, BY)]
    page = client.get(answer.headers["location"]).text
    assert "The deadline was extended." in page and "extended by 2 month(s)" in page
    assert 'action="/requests/' + failed + '/extend"' not in page  # extended once: no form any more


def test_exempt_from_the_page_settles_the_system_with_its_reason(
        client: TestClient, rt: Runtime, failed: str) -> None:
    """Exempt the failed system: it is exempt with the reason, the request completes, the audit says who."""
    answer = operate(client, failed, "exempt", system="billing", reason="kept for tax law, §147 AO, until 2032")
    assert answer.status_code == 303
    status = views.status(rt, failed)
    billing = [s for s in status["systems"] if s["system"] == "billing"][0]
    assert (billing["status"], billing["reason"], status["status"]) == (
        "exempt", "kept for tax law, §147 AO, until 2032", "completed")
    assert [e["by"] for e in audited(rt, failed, "system.exempt")] == [BY]


def test_a_flag_moves_along_its_lifecycle_from_the_page(client: TestClient, rt: Runtime, failed: str) -> None:
    """Open to acknowledged, then retrained: each with its reason, audited with who."""
    fields = {"model": "recsys", "version": "7"}
    assert operate(client, failed, "flag", to="acknowledged", reason="retraining is planned", **fields
                   ).status_code == 303
    csrf = csrf_of(client, failed)
    assert act(client, failed, "flag", csrf=csrf, to="retrained", reason="v8 trained without them", **fields
               ).status_code == 303
    flag = views.status(rt, failed)["flags"][0]
    assert (flag["state"], flag["reason"]) == ("retrained", "v8 trained without them")
    assert [e["by"] for e in audited(rt, failed, "flag.acknowledged") + audited(rt, failed, "flag.retrained")
            ] == [BY, BY]


def test_a_reason_is_escaped_where_the_page_shows_it(client: TestClient, rt: Runtime, failed: str) -> None:
    """A reason with markup is kept as typed and shown as text, never as markup."""
    reason = '<script>alert("x")</script> & <b>hold</b>'
    assert operate(client, failed, "exempt", system="billing", reason=reason).status_code == 303
    page = client.get(f"/requests/{failed}").text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;hold&lt;/b&gt;" in page
    assert "<script>" not in page and "<b>hold" not in page


# --- refused: the engine's rules and bad input ----------------------------------------------------


@pytest.mark.parametrize(("action", "fields", "status", "says"), [
    ("exempt", {"system": "crm", "reason": "a hold"}, 409, "system crm of request {id} is already erased"),
    ("exempt", {"system": "nowhere", "reason": "a hold"}, 422, "has no system &#x27;nowhere&#x27;"),
    ("exempt", {"reason": "a hold"}, 422, "has no system &#x27;&#x27;"),
    ("extend", {"months": "3", "reason": "busy"}, 422, "months: 1 or 2"),
    ("extend", {"months": "two", "reason": "busy"}, 422, "months: 1 or 2"),
    ("extend", {"reason": "busy"}, 422, "months: 1 or 2"),
    ("flag", {"model": "recsys", "version": "7", "to": "retrained", "reason": "done"}, 409,
     "acknowledge it first"),
    ("flag", {"model": "recsys", "version": "7", "to": "open", "reason": "again"}, 422,
     "to: one of acknowledged, retrained, waived"),
    ("flag", {"model": "recsys", "version": "8", "to": "waived", "reason": "x"}, 422, "no model"),
])
def test_a_refused_action_shows_one_line_and_changes_nothing(
        client: TestClient, rt: Runtime, failed: str, action: str, fields: dict[str, str], status: int,
        says: str) -> None:
    """What the engine's rules refuse (a settled system, a move the lifecycle does not allow) or bad input
    (no such system, months other than 1 or 2, no such state): the request's page with one line saying
    why, the forms still there, nothing changed."""
    before = state(rt, failed)
    answer = operate(client, failed, action, **fields)
    assert answer.status_code == status and says.format(id=failed) in refused_line(answer.text)
    assert CSRF.search(act_section(answer.text)) and state(rt, failed) == before


def test_retrying_a_request_that_did_not_fail_is_refused(client: TestClient, rt: Runtime, failed: str) -> None:
    """A completed request (billing exempted): retry is 409, saying it did not fail; nothing sent."""
    assert operate(client, failed, "exempt", system="billing", reason="kept for tax law").status_code == 303
    before = state(rt, failed)
    answer = act(client, failed, "retry", csrf=csrf_of(client, failed))
    assert answer.status_code == 409 and "is completed, not failed: nothing to retry" in refused_line(answer.text)
    assert state(rt, failed) == before


def test_extending_twice_is_refused(client: TestClient, rt: Runtime, failed: str) -> None:
    """The second extension is 409, citing Art. 12(3)'s one extension; the first one stands."""
    assert operate(client, failed, "extend", months="1", reason="busy archive").status_code == 303
    before = state(rt, failed)
    answer = act(client, failed, "extend", csrf=csrf_of(client, failed), months="1", reason="still busy")
    assert answer.status_code == 409 and "allows one extension" in refused_line(answer.text)
    assert state(rt, failed) == before and before[0]["extended"]["months"] == 1


def test_extending_past_the_deadline_is_refused(client: TestClient, rt: Runtime, failed: str) -> None:
    """An extension asked once the deadline has passed is 409, as `erasure extend` refuses it."""
    with rt.transaction() as session:
        session.execute(update(Request).where(Request.id == failed).values(deadline=utcnow() - timedelta(days=1)))
    before = state(rt, failed)
    answer = operate(client, failed, "extend", months="1", reason="late")
    assert answer.status_code == 409 and "passed its deadline" in refused_line(answer.text)
    assert state(rt, failed) == before


@pytest.mark.parametrize("action", ["extend", "exempt", "flag"])
@pytest.mark.parametrize("reason", [None, "", "   ", "x" * 501, "two\nlines", "tab\there", "bidi \u202e txt"])
def test_a_bad_or_missing_reason_is_refused_and_changes_nothing(
        client: TestClient, rt: Runtime, failed: str, action: str, reason: str | None) -> None:
    """No reason, a blank one, one too long, or one with a line break, a control or a bidi character:
    422 with one line naming the reason, nothing changed."""
    fields = {k: v for k, v in ACTION_FIELDS[action].items() if k != "reason"}
    if reason is not None:
        fields["reason"] = reason
    before = state(rt, failed)
    answer = operate(client, failed, action, **fields)
    assert answer.status_code == 422 and refused_line(answer.text).startswith("Not done: reason:")
    assert state(rt, failed) == before


# --- refused: who asks, and from where ------------------------------------------------------------


@pytest.mark.parametrize("action", list(ACTION_FIELDS))
@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "read-session"])
def test_a_bad_csrf_token_is_403_and_changes_nothing(
        client: TestClient, rt: Runtime, failed: str, action: str, csrf: str | None) -> None:
    """No CSRF token, an empty or made-up one, or another session's: 403, nothing changed."""
    fixed(rt, "billing")
    other = Sessions(rt).csrf(sign_in(client, READ).cookies["erasure-session"])
    sign_in(client, OPERATE)
    fields = dict(ACTION_FIELDS[action])
    if csrf is not None:
        fields["csrf"] = other if csrf == "read-session" else csrf
    before = state(rt, failed)
    answer = act(client, failed, action, **fields)
    assert answer.status_code == 403 and "reload the page" in answer.text
    assert state(rt, failed) == before


@pytest.mark.parametrize("action", list(ACTION_FIELDS))
def test_a_read_session_cannot_act_even_with_its_own_csrf_token(
        client: TestClient, rt: Runtime, failed: str, action: str) -> None:
    """A read-only session's own CSRF token is valid, but its token lacks operate: 403, nothing changed."""
    fixed(rt, "billing")
    cookie = sign_in(client, READ).cookies["erasure-session"]
    before = state(rt, failed)
    answer = act(client, failed, action, csrf=Sessions(rt).csrf(cookie), **ACTION_FIELDS[action])
    assert answer.status_code == 403 and "operate scope" in answer.text
    assert state(rt, failed) == before


def test_a_form_from_another_site_is_403(client: TestClient, rt: Runtime, failed: str) -> None:
    """Even with the right CSRF token, an action a browser says came from another site is refused."""
    fixed(rt, "billing")
    sign_in(client, OPERATE)
    before = state(rt, failed)
    answer = client.post(f"/requests/{failed}/retry", headers={"Sec-Fetch-Site": "cross-site"},
                         data={"csrf": csrf_of(client, failed)})
    assert answer.status_code == 403 and state(rt, failed) == before


def test_without_a_session_an_action_is_the_sign_in_form(client: TestClient, rt: Runtime, failed: str) -> None:
    """No session: 401 and the sign-in form; nothing changed."""
    before = state(rt, failed)
    answer = act(client, failed, "retry", csrf="0" * 64)
    assert answer.status_code == 401 and 'action="/sign-in"' in answer.text and state(rt, failed) == before


@pytest.mark.parametrize(("path", "fields"), [
    (f"/requests/{NO_SUCH}/retry", {}),
    (f"/requests/{NO_SUCH}/extend", ACTION_FIELDS["extend"]),
    (f"/requests/{NO_SUCH}/extend", {"months": "1"}),  # bad input too: still no such request
    (f"/requests/{NO_SUCH}/exempt", ACTION_FIELDS["exempt"]),
    (f"/requests/{NO_SUCH}/flag", ACTION_FIELDS["flag"]),
    ("/requests/not-an-id/retry", {}),
    ("/requests/{id}/erase-everything", {}),
])
def test_an_unknown_request_or_action_is_404_and_changes_nothing(
        client: TestClient, rt: Runtime, failed: str, path: str, fields: dict[str, str]) -> None:
    """An id the store does not hold, a malformed one, or an action the page does not offer: 404."""
    sign_in(client, OPERATE)
    csrf = csrf_of(client, failed)
    before = state(rt, failed)
    answer = client.post(path.format(id=failed), data={"csrf": csrf, **fields})
    assert answer.status_code == 404 and "No such request" in answer.text and state(rt, failed) == before


# --- in a browser --------------------------------------------------------------------------------


@pytest.fixture
def served(rt: Runtime) -> Iterator[str]:
    """The API served on a free loopback port, in a thread; its base URL."""
    with serving(create_app(rt)) as url:
        yield url


def test_a_dpo_retries_a_failed_request_in_chromium(rt: Runtime, failed: str, served: str) -> None:
    """In headless Chromium: an operate token signs in on the failed request's page, which shows billing
    failed; billing is repaired, Retry clicked; the page says it was retried, and once the worker has run
    the request shows completed; screenshots are kept in test-artifacts/."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        expect = sync_playwright = None  # type: ignore[assignment]
    if not CHROMIUM.exists() or sync_playwright is None:  # as the status page's own browser test does
        missing = f"{CHROMIUM} (apt-get install chromium) or playwright is not installed"
        pytest.fail(missing) if os.environ.get("ERASURE_TEST_SERVICES") == "require" else pytest.skip(missing)

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 800})
            page.goto(f"{served}/requests/{failed}")
            page.get_by_label("API token with the read scope").fill(OPERATE)
            page.get_by_role("button", name="Sign in").click()
            facts = page.locator("dl.facts")
            expect(facts).to_contain_text("failed")
            page.screenshot(path=str(artifacts / "status-page-retry-failed.png"), full_page=True)
            fixed(rt, "billing")
            page.get_by_role("button", name="Retry the failed systems").click()
            expect(page.get_by_role("status")).to_contain_text("Retried")
            drain(rt)  # the worker, in-process, runs the messages the retry sent
            page.reload()
            expect(facts).to_contain_text("completed")
            expect(page.locator("section[aria-labelledby=act]")).not_to_contain_text("Retry the failed systems")
            page.screenshot(path=str(artifacts / "status-page-retry-completed.png"), full_page=True)
        finally:
            browser.close()
    assert views.status(rt, failed)["status"] == "completed"
    assert audited(rt, failed, "request.retried")[0]["by"] == BY
