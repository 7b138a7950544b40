"""A request's scope where people and tools meet it: `erasure submit --scope training`, the task's and
the API's `scope` field (a bad one refused, nothing recorded), the scope in status, list and the API,
the certificate of an objection to training use that says the skipped systems kept the subject's data
on purpose, and the DPO page that shows the scope and a badge for each skipped system."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.helpers import MakeRuntime, api_tokens, drain, sign_in, stub
from worker.engine import intake
from worker.queue import dispatch, tasks
from worker.runtime import Runtime
from worker.store.models import Request, SystemTask
from worker.surfaces import report, views
from worker.surfaces.api import create_app
from worker.surfaces.cli import main

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "submit-and-read-token"
SYSTEMS = stub("features", training=True) + stub("crm")  # one training system, one not


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """A training stub system `features`, a stub system `crm` that is not, and a token for both scopes."""
    return make_runtime(SYSTEMS, top=api_tokens({TOKEN: ["submit", "read"]}))


@pytest.fixture
def objection(rt: Runtime) -> str:
    """A completed training request: `features` erased, `crm` skipped."""
    request_id = intake.submit(rt, {"user_id": "42"}, scope="training").request_id
    drain(rt)
    return request_id


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The API (and the page) over that runtime, in-process, following no redirect by itself."""
    with TestClient(create_app(rt), follow_redirects=False) as made:
        yield made


def run(rt: Runtime, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one command in-process over the runtime's config; returns the exit code, stdout and stderr."""
    code = main([*argv, "--config", str(rt.config.path)])
    out, err = capsys.readouterr()
    return code, out, err


def recorded(rt: Runtime) -> tuple[int, int]:
    """How many requests and system rows the store holds."""
    with rt.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Request)) or 0,
                session.scalar(select(func.count()).select_from(SystemTask)) or 0)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- submitting --------------------------------------------------------------------------------------


def test_cli_submit_scope_training_records_an_objection(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    """`erasure submit --scope training` records a request of scope training, its crm system skipped."""
    code, out, _ = run(rt, capsys, "submit", "--subject", "user_id=42", "--scope", "training", "--json")
    status = views.status(rt, json.loads(out)["request_id"])
    assert code == 0
    assert (status["scope"], [s["status"] for s in status["systems"]]) == ("training", ["pending", "skipped"])


def test_cli_bad_scope_exits_2_with_one_line_and_records_nothing(
    rt: Runtime, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--scope everything` is exit 2, one line on stderr naming --scope and its choices, and no request."""
    with pytest.raises(SystemExit) as exit_:
        run(rt, capsys, "submit", "--subject", "user_id=42", "--scope", "everything")
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and "--scope" in err and "'all', 'training'" in err
    assert recorded(rt) == (0, 0)


def test_the_task_takes_a_scope(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task `erasure.submit` with `scope = "training"` records a request of that scope."""
    monkeypatch.setattr(dispatch, "_current", rt)
    tasks.submit(subject={"user_id": "42"}, scope="training")
    assert [r["scope"] for r in views.listing(rt)] == ["training"]


def test_the_task_drops_a_bad_scope_with_a_logged_reason(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """A task with a scope that is neither all nor training is dropped, logged with the reason, nothing recorded."""
    monkeypatch.setattr(dispatch, "_current", rt)
    tasks.submit(subject={"user_id": "42"}, scope="everything")
    assert [e["reason"] for e in json_logs() if e["event"] == "intake.dropped"] == [
        "scope: must be one of all, training"]
    assert recorded(rt) == (0, 0)


def test_the_api_takes_a_scope(rt: Runtime, client: TestClient) -> None:
    """POST /v1/requests with `"scope": "training"` is 202, and the request's status says training."""
    answer = client.post("/v1/requests", json={"subject": {"user_id": "42"}, "scope": "training"}, headers=AUTH)
    assert answer.status_code == 202
    assert client.get(f"/v1/requests/{answer.json()['request_id']}", headers=AUTH).json()["scope"] == "training"


@pytest.mark.parametrize("scope", ["everything", None, 3])
def test_the_api_answers_422_to_a_bad_scope_and_records_nothing(
    rt: Runtime, client: TestClient, scope: Any,
) -> None:
    """A scope that is not "all" or "training" is a 422 problem naming the field, and no request."""
    answer = client.post("/v1/requests", json={"subject": {"user_id": "42"}, "scope": scope or ""}, headers=AUTH)
    assert (answer.status_code, answer.json()["detail"]) == (422, "scope: must be one of all, training")
    assert recorded(rt) == (0, 0)


def test_the_openapi_body_has_the_scope(client: TestClient) -> None:
    """The request body's schema in /openapi.json has `scope`: all or training, all by default."""
    body = client.get("/openapi.json").json()["paths"]["/v1/requests"]["post"]["requestBody"]
    scope = body["content"]["application/json"]["schema"]["properties"]["scope"]
    assert (scope["enum"], scope["default"]) == (["all", "training"], "all")


# --- reading -----------------------------------------------------------------------------------------


def test_status_list_and_api_carry_the_scope(rt: Runtime, client: TestClient, objection: str) -> None:
    """Status, list and the API's routes carry `scope`: training for the objection, all for an erasure."""
    erasure = intake.submit(rt, {"user_id": "7"}).request_id
    assert (views.status(rt, objection)["scope"], views.status(rt, erasure)["scope"]) == ("training", "all")
    assert {r["request_id"]: r["scope"] for r in views.listing(rt)} == {objection: "training", erasure: "all"}
    listed = client.get("/v1/requests", headers=AUTH).json()
    assert {r["request_id"]: r["scope"] for r in listed} == {objection: "training", erasure: "all"}


def test_list_filters_by_scope(rt: Runtime, client: TestClient, capsys: pytest.CaptureFixture[str],
                               objection: str) -> None:
    """`erasure list --scope training` and GET /v1/requests?scope=training list the objections alone."""
    intake.submit(rt, {"user_id": "7"})
    _, out, _ = run(rt, capsys, "list", "--scope", "training", "--json")
    assert [r["request_id"] for r in json.loads(out)] == [objection]
    listed = client.get("/v1/requests", params={"scope": "training"}, headers=AUTH).json()
    assert [r["request_id"] for r in listed] == [objection]


def test_status_for_people_shows_the_scope(rt: Runtime, capsys: pytest.CaptureFixture[str], objection: str) -> None:
    """`erasure status` without --json has a scope line, and the crm row says skipped with its reason."""
    _, out, _ = run(rt, capsys, "status", objection)
    lines = out.splitlines()
    assert any(line.startswith("scope     training: an objection to training use") for line in lines)
    [crm] = [line for line in lines if line.startswith("crm ")]
    assert "skipped" in crm and crm.endswith("scope: training")
    _, out, _ = run(rt, capsys, "status", intake.submit(rt, {"user_id": "7"}).request_id)
    assert "scope     all" in out.splitlines()


# --- the certificate ---------------------------------------------------------------------------------


def test_certificate_json_states_the_objection_and_lists_the_skipped_systems(rt: Runtime, objection: str) -> None:
    """The JSON has scope training, says it is an objection whose other data was kept, and names crm skipped."""
    certificate = report.build(rt, objection)
    assert (certificate["scope"], certificate["status"], certificate["skipped_systems"]) == (
        "training", "completed", ["crm"])
    assert certificate["scope_statement"].startswith("an objection to the use of the subject's data for training")
    assert "kept on purpose" in certificate["scope_statement"]
    assert {s["system"]: s["status"] for s in certificate["systems"]} == {"features": "erased", "crm": "skipped"}


def test_certificate_markdown_says_objection_and_never_calls_a_skipped_system_erased(
    rt: Runtime, objection: str,
) -> None:
    """The Markdown is titled an objection, says crm kept the data on purpose, and shows crm as skipped only."""
    text = report.markdown(report.build(rt, objection))
    assert text.startswith("# Certificate of an objection to training use\n")
    assert "| Scope | **training**: an objection to the use of the subject's data for training (Art. 21 GDPR)" in text
    assert ("**This is an objection to training use, not an erasure of all the subject's data: only the systems "
            "marked as training data were in its scope, and the subject's data in `crm` was kept on purpose.**") in text
    assert "| crm | stub | skipped, kept on purpose | - |" in text
    crm = text.split("### crm (stub)", 1)[1].split("\n## ", 1)[0]
    assert "erased" not in crm and "not touched: out of the request's scope" in crm
    assert "None: nothing of the subject's was kept." not in text


def test_certificate_of_an_erasure_states_scope_all(rt: Runtime) -> None:
    """A request of the default scope has `scope` all and no skipped system, and says it is an erasure."""
    request_id = intake.submit(rt, {"user_id": "7"}).request_id
    drain(rt)
    certificate = report.build(rt, request_id)
    assert (certificate["scope"], certificate["skipped_systems"]) == ("all", [])
    text = report.markdown(certificate)
    assert text.startswith("# Certificate of erasure\n")
    assert "| Scope | **all**: an erasure of all the subject's data (Art. 17 GDPR) |" in text


# --- the page ----------------------------------------------------------------------------------------


def test_the_page_shows_the_scope_and_a_badge_for_the_skipped_system(client: TestClient, objection: str) -> None:
    """The request's page states the scope, says what was kept, and badges crm skipped; the list marks it."""
    sign_in(client, TOKEN)
    page = client.get(f"/requests/{objection}").text
    listing = client.get("/").text
    assert "<dt>Scope</dt><dd><strong>training</strong>: an objection to the use" in page
    assert "the subject&#x27;s data in <code>crm</code> was kept on purpose" in page
    assert '<span class="badge quiet">skipped</span>' in page
    assert '<span class="badge info">objection to training</span>' in listing
