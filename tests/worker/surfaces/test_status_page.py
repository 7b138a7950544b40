"""The DPO status page at `/` as a data protection officer uses it: a read token typed into a form
once, traded for a session cookie that is no token; the open requests overdue first, one request's
systems with evidence and reasons, its flagged models, and its certificate to download; every value
escaped, no identifier's value anywhere; and the whole of it driven in headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import update

from tests.helpers import ROOT, MakeRuntime, api_tokens, drain, sign_in, stub
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, serving
from worker.engine import exemptions, flags, intake
from worker.runtime import Runtime
from worker.store.models import FlagState, Lineage, ModelFlag, Request, SystemTask, utcnow
from worker.surfaces import report, views
from worker.surfaces.api import create_app

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SUBMIT, READ = "submit-only-token", "read-only-token"
TOKENS = api_tokens({SUBMIT: ["submit"], READ: ["read"]})
SYSTEMS = stub("crm") + stub("mail", uses=["email"]) + stub("archive")
USER_ID, EMAIL = "4242991377", "zed.secret@example.com"  # a subject's values: never on a page
HOLD = "legal hold on the 2026 accounts (case 17-B) until 2027-03-31"
NO_SUCH = "00000000-0000-4000-8000-000000000000"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """A runtime over a SQLite store with three stub systems, a read token and a submit-only token."""
    return make_runtime(SYSTEMS, top=TOKENS)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The API (and so the page) over that runtime, in-process, following no redirect by itself."""
    with TestClient(create_app(rt), follow_redirects=False) as made:
        yield made


def populate(rt: Runtime, hold: str = HOLD, flag_reason: str = "retraining without the subject is planned",
             ) -> dict[str, str]:
    """Four requests: one completed (archive exempt by a DPO, a flagged model acknowledged), one
    three days overdue, and two open ones submitted so that newest-first is not deadline order."""
    done = intake.submit(rt, {"user_id": USER_ID, "email": EMAIL}, "support-tool").request_id
    exemptions.exempt(rt, done, "archive", hold)
    drain(rt)
    late = intake.submit(rt, {"user_id": "43"}).request_id
    later = intake.submit(rt, {"user_id": "44"}).request_id
    soon = intake.submit(rt, {"user_id": "45"}).request_id
    now = utcnow()
    with rt.transaction() as session:
        for request_id, days in ((late, -3), (soon, 2)):
            session.execute(update(Request).where(Request.id == request_id).values(deadline=now + timedelta(days)))
        session.add(Lineage(model="recsys", version="7", snapshot="clicks:2026-11-01", recorded_at=now,
                            trained_at=now))
        session.add(ModelFlag(model="recsys", version="7", request_id=done, snapshots=["clicks:2026-11-01"],
                              flagged_at=now))
    flags.change(rt, "recsys", "7", FlagState.ACKNOWLEDGED, flag_reason)
    return {"done": done, "late": late, "later": later, "soon": soon}


def open_ids(page: str) -> list[str]:
    """The request ids of the open-requests table, in the order shown."""
    section = page.split('<h2 id="open">', 1)[1].split("</section>", 1)[0]
    return [part.split('"', 1)[0] for part in section.split('<a href="/requests/')[1:]]


# --- signing in ----------------------------------------------------------------------------------


def test_without_a_session_the_page_is_the_sign_in_form(client: TestClient, rt: Runtime) -> None:
    """No cookie: `/` shows the sign-in form and no request; a request's page is 401 with the form."""
    ids = populate(rt)
    home = client.get("/")
    assert home.status_code == 200
    assert '<form class="sign-in" method="post" action="/sign-in">' in home.text
    assert '<label for="token">' in home.text and ids["done"] not in home.text
    page = client.get(f"/requests/{ids['done']}")
    assert page.status_code == 401 and 'action="/sign-in"' in page.text and HOLD not in page.text
    assert client.get(f"/requests/{ids['done']}/certificate.json").status_code == 401


def test_unknown_token_is_401_and_the_form_again(client: TestClient) -> None:
    """A token that is not configured (or the stored hash of one) is 401: the form, saying so, and no cookie."""
    for token in ("not-a-token", hashlib.sha256(READ.encode()).hexdigest(), ""):
        answer = sign_in(client, token)
        assert answer.status_code == 401
        assert 'role="alert"' in answer.text and 'aria-invalid="true"' in answer.text
        assert "set-cookie" not in answer.headers


def test_submit_only_token_is_refused(client: TestClient) -> None:
    """A token without the read scope is 403, says so, and gets no session."""
    answer = sign_in(client, SUBMIT)
    assert answer.status_code == 403 and "lacks the read scope" in answer.text
    assert "set-cookie" not in answer.headers
    assert 'action="/sign-in"' in client.get("/").text


def test_read_token_gets_a_session_cookie_that_is_no_token(client: TestClient, rt: Runtime) -> None:
    """A read token: 303 to the list with an HttpOnly, SameSite=Strict, Path=/ cookie holding neither
    the token nor its SHA-256; then `/` lists the requests."""
    ids = populate(rt)
    answer = sign_in(client, f"  {READ}\n")  # pasted with blanks around it
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("erasure-session=") and "secure" not in cookie.lower()
    assert {"httponly", "samesite=strict", "path=/"} <= {part.strip().lower() for part in cookie.split(";")}
    assert READ not in cookie and hashlib.sha256(READ.encode()).hexdigest() not in cookie
    page = client.get("/").text
    assert set(open_ids(page)) == {ids["late"], ids["later"], ids["soon"]} and ids["done"] in page


def test_over_https_the_cookie_is_secure(rt: Runtime) -> None:
    """Over https the cookie is Secure and carries the __Host- prefix."""
    with TestClient(create_app(rt), base_url="https://testserver", follow_redirects=False) as client:
        cookie = sign_in(client, READ).headers["set-cookie"]
    assert cookie.startswith("__Host-erasure-session=") and "; secure" in cookie.lower()


def test_a_tampered_or_foreign_cookie_opens_nothing(client: TestClient) -> None:
    """A cookie changed by one character, or made up, is no session."""
    value = sign_in(client, READ).cookies["erasure-session"]
    for forged in (value[:-1] + ("0" if value[-1] != "0" else "1"), "v1.99999999999.abc", READ, ""):
        client.cookies.set("erasure-session", forged)
        assert 'action="/sign-in"' in client.get("/").text
    client.cookies.clear()
    odd = client.get("/", headers={"Cookie": "erasure-session=v1.99999999999.\u00e9t\u00e9".encode()})
    assert odd.status_code == 200 and 'action="/sign-in"' in odd.text


def test_a_session_holds_across_processes_and_ends_with_its_token(
        client: TestClient, make_runtime: MakeRuntime) -> None:
    """Another API process over the same store and keys takes the cookie; one whose config no longer
    has the token refuses it."""
    value = sign_in(client, READ).cookies["erasure-session"]
    for tokens, signed_in in ((TOKENS, True), (TOKENS.replace(hashlib.sha256(READ.encode()).hexdigest(), "a" * 64),
                                               False)):
        with TestClient(create_app(make_runtime(SYSTEMS, top=tokens))) as other:
            other.cookies.set("erasure-session", value)
            assert ("Sign out" in other.get("/").text) is signed_in


def test_sign_out_ends_the_session(client: TestClient) -> None:
    """POST /sign-out expires the cookie and goes back to the form."""
    sign_in(client, READ)
    answer = client.post("/sign-out")
    assert answer.status_code == 303 and "max-age=0" in answer.headers["set-cookie"].lower()
    assert 'action="/sign-in"' in client.get("/").text


def test_cross_site_sign_in_is_refused(client: TestClient) -> None:
    """A form posted from another site's page (Sec-Fetch-Site: cross-site) signs no one in."""
    answer = client.post("/sign-in", data={"token": READ}, headers={"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 400 and "set-cookie" not in answer.headers


@pytest.mark.parametrize(("asked", "sent_to"), [
    (f"/requests/{NO_SUCH}", f"/requests/{NO_SUCH}"), ("https://evil.example/", "/"), ("//evil.example", "/"),
    ("/requests/../metrics", "/"),
])
def test_after_signing_in_only_a_page_of_this_one(client: TestClient, asked: str, sent_to: str) -> None:
    """Signing in goes back to the page asked for, never to another site."""
    assert sign_in(client, READ, next_path=asked).headers["location"] == sent_to


# --- what the pages show -------------------------------------------------------------------------


def test_open_requests_overdue_first_then_by_deadline(client: TestClient, rt: Runtime) -> None:
    """The open requests are listed overdue first, then by deadline, not newest first; the overdue
    one says so in words; the completed one is listed apart."""
    ids = populate(rt)
    sign_in(client, READ)
    page = client.get("/").text
    assert open_ids(page) == [ids["late"], ids["soon"], ids["later"]]
    late_row = page.split(f'<a href="/requests/{ids["late"]}">', 1)[1].split("</tr>", 1)[0]
    assert "3 days overdue" in late_row and 'class="late"' in page.split(ids["late"], 1)[0][-120:]
    assert ids["done"] in page.split('<h2 id="done">', 1)[1]
    assert "recsys" in page.split('<h2 id="models">', 1)[1]


def test_past_the_list_limit_the_most_urgent_are_shown_and_all_are_counted(
    client: TestClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More open requests than a list holds: the list keeps the most urgent (the oldest, overdue one
    among them, not the newest), and the counts above it are of all of them."""
    ids = populate(rt)
    monkeypatch.setattr(views, "LIST_LIMIT", 2)
    sign_in(client, READ)
    page = client.get("/").text
    assert open_ids(page) == [ids["late"], ids["soon"]]
    assert "3 open, <strong>1 overdue</strong>" in page


def test_request_page_shows_systems_evidence_reason_and_flags(client: TestClient, rt: Runtime) -> None:
    """One request: each system's status and reason, its evidence, the flagged model and its state,
    and links to the certificate."""
    ids = populate(rt)
    sign_in(client, READ)
    page = client.get(f"/requests/{ids['done']}").text
    rows = {row.split("</th>", 1)[0]: row for row in page.split('<tr class=""><th scope="row">')[1:]}
    assert ">erased<" in rows["crm"] and ">erased<" in rows["mail"]
    assert ">exempt<" in rows["archive"] and HOLD in rows["archive"]
    assert "acknowledged" in rows["recsys"] and "retraining without the subject is planned" in rows["recsys"]
    assert "clicks:2026-11-01" in rows["recsys"]
    assert f'href="/requests/{ids["done"]}/certificate.md"' in page
    assert f'href="/requests/{ids["done"]}/certificate.json"' in page


def test_no_identifier_value_on_any_page_or_certificate(client: TestClient, rt: Runtime) -> None:
    """The subject shows as its subject_ref only: no identifier's value on the list, the request's
    page, or either certificate."""
    ids = populate(rt)
    sign_in(client, READ)
    with rt.transaction() as session:
        ref = session.get(Request, ids["done"]).subject_ref  # type: ignore[union-attr]
    for path in ("/", f"/requests/{ids['done']}", f"/requests/{ids['done']}/certificate.md",
                 f"/requests/{ids['done']}/certificate.json"):
        text = client.get(path).text
        assert ref in text
        assert USER_ID not in text and EMAIL not in text and "zed.secret" not in text


def test_everything_shown_is_escaped(client: TestClient, rt: Runtime) -> None:
    """Markup in an exemption's reason, a flag's reason and a table name in the evidence is shown as
    text, never as markup."""
    ids = populate(rt, hold="held <script>alert('hold')</script>", flag_reason="<img src=x onerror=alert(1)>")
    with rt.transaction() as session:
        session.execute(update(SystemTask).where(SystemTask.request_id == ids["done"], SystemTask.system == "crm")
                        .values(evidence={"tables": [{"table": "<script>alert('t')</script>", "action": "delete",
                                                      "rows": 1}]}))
    sign_in(client, READ)
    for path in ("/", f"/requests/{ids['done']}"):
        page = client.get(path).text
        assert "<script" not in page and "<img" not in page
    page = client.get(f"/requests/{ids['done']}").text
    assert "held &lt;script&gt;alert(&#x27;hold&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<code>&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt;</code>" in page


def test_certificate_downloads_as_markdown_and_json(client: TestClient, rt: Runtime) -> None:
    """The certificate links download report.py's Markdown and JSON, as attachments."""
    ids = populate(rt)
    sign_in(client, READ)
    base = f"/requests/{ids['done']}/certificate"
    md, js = client.get(f"{base}.md"), client.get(f"{base}.json")
    assert md.status_code == js.status_code == 200
    assert md.headers["content-type"].startswith("text/markdown")
    assert md.headers["content-disposition"] == f'attachment; filename="certificate-{ids["done"]}.md"'
    assert md.text.startswith("# Certificate of erasure") and HOLD in md.text
    drawn = js.json()
    expected = report.build(rt, ids["done"])
    assert {k: v for k, v in drawn.items() if k != "drawn_at"} == {k: v for k, v in expected.items()
                                                                     if k != "drawn_at"}
    assert json.loads(js.text)["systems"][2]["reason"] == HOLD


@pytest.mark.parametrize("path", [f"/requests/{NO_SUCH}", "/requests/not-an-id", f"/requests/{NO_SUCH}/certificate.md",
                                  "/requests/not-an-id/certificate.json"])
def test_unknown_request_is_a_404_page(client: TestClient, path: str) -> None:
    """An id the store does not hold, or no id at all: a 404 page that does not echo it."""
    sign_in(client, READ)
    answer = client.get(path)
    assert answer.status_code == 404 and "No such request" in answer.text and "not-an-id" not in answer.text


def test_pages_carry_a_strict_policy_and_stay_out_of_the_openapi(client: TestClient) -> None:
    """Pages forbid scripts, framing and caching; the OpenAPI, which is for machines, does not list them."""
    headers = client.get("/").headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    paths = set(client.get("/openapi.json").json()["paths"])
    assert not paths & {"/", "/sign-in", "/sign-out", "/requests/{request_id}"}


class Markup(HTMLParser):
    """What an accessibility check looks at: the language, landmarks, headers, labels, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


@pytest.mark.parametrize("page", ["sign-in", "list", "request"])
def test_pages_are_accessible_markup(client: TestClient, rt: Runtime, page: str) -> None:
    """Each page has a language, a title, header and main landmarks, one h1, column and row headers
    with scope, a label for every field, and no script."""
    ids = populate(rt)
    if page != "sign-in":
        sign_in(client, READ)
    markup = Markup()
    markup.feed(client.get({"sign-in": "/", "list": "/", "request": f"/requests/{ids['done']}"}[page]).text)
    tags = [tag for tag, _ in markup.tags]
    assert ("html", {"lang": "en"}) in markup.tags and markup.title.strip()
    assert {"header", "main"} <= set(tags) and tags.count("h1") == 1 and "script" not in tags
    assert all(attrs.get("scope") in ("col", "row") for tag, attrs in markup.tags if tag == "th")
    labelled = {attrs.get("for") for tag, attrs in markup.tags if tag == "label"}
    fields = [attrs for tag, attrs in markup.tags if tag == "input" and attrs.get("type") != "hidden"]
    assert all(attrs.get("id") in labelled for attrs in fields)
    if page != "sign-in":
        assert "nav" in tags and "table" in tags and "th" in tags


# --- in a browser --------------------------------------------------------------------------------


def browser_missing(reason: str) -> None:
    """Skip (or, with ERASURE_TEST_SERVICES=require, fail) when there is no browser to drive."""
    if os.environ.get("ERASURE_TEST_SERVICES") == "require":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def served(rt: Runtime) -> Iterator[str]:
    """The API served on a free loopback port, in a thread; its base URL."""
    with serving(create_app(rt)) as url:
        yield url


def test_a_dpo_signs_in_and_reads_a_request_in_chromium(rt: Runtime, served: str) -> None:
    """In headless Chromium: the form, a wrong token refused, the right one typed and the button clicked;
    the list with the overdue
    request first; a click to the completed request, its exempt system and reason, its flagged
    model; a full-page screenshot of each kept in test-artifacts/."""
    if not CHROMIUM.exists():
        browser_missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        browser_missing("playwright is not installed (pip install playwright)")
    ids = populate(rt)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 800})
            page.goto(served + "/")
            page.get_by_label("API token with the read scope").fill("a-wrong-token")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("not known")
            page.screenshot(path=str(ARTIFACTS / "status-page-sign-in.png"), full_page=True)
            page.get_by_label("API token with the read scope").fill(READ)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Erasure requests")
            open_rows = page.locator("section[aria-labelledby=open] tbody tr")
            expect(open_rows).to_have_count(3)
            expect(open_rows.first).to_contain_text(ids["late"])
            expect(open_rows.first).to_contain_text("days overdue")
            page.screenshot(path=str(ARTIFACTS / "status-page-list.png"), full_page=True)
            page.get_by_role("link", name=ids["done"]).first.click()
            archive = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="archive", exact=True))
            expect(archive).to_contain_text("exempt")
            expect(archive).to_contain_text(HOLD)
            recsys = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="recsys"))
            expect(recsys).to_contain_text("acknowledged")
            expect(page.get_by_role("link", name="Markdown")).to_have_attribute(
                "href", f"/requests/{ids['done']}/certificate.md")
            page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "status-page.png").stat().st_size > 10_000
