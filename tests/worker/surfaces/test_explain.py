"""`erasure explain REQUEST_ID [--json]` and `GET /v1/requests/{id}/explain` as on-call engineers and DPO
dashboards use them: the story as a table, oldest first, ending in one line of what to do; the JSON
shape; an unknown request exit 3 (404); never an identifier's value."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest

from tests.helpers import MakeRuntime, api_tokens, drain, stub, system_table
from worker.engine import intake
from worker.runtime import Runtime
from worker.surfaces.api import create_app
from worker.surfaces.cli import main

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

USER_ID, EMAIL = "4242991377", "zed.secret@example.com"
READ, SUBMIT = "read-token", "submit-token"
NO_SUCH = "00000000-0000-4000-8000-000000000000"
SYSTEMS = (stub("billing", fail_transiently=9) + stub("crm")
           + system_table("desk", "manual", uses=["email"], instructions="Delete the customer's tickets."))


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """A failing stub system, one that erases, a manual one looked up by email; read and submit tokens."""
    return make_runtime(SYSTEMS, top=api_tokens({READ: ["read"], SUBMIT: ["submit"]}))


@pytest.fixture
def request_id(rt: Runtime) -> str:
    """A request played as far as the worker takes it: billing failed for good, crm erased, desk open."""
    found = intake.submit(rt, {"user_id": USER_ID, "email": EMAIL}).request_id
    drain(rt)
    return found


def run(capsys: pytest.CaptureFixture[str], rt: Runtime, *argv: str) -> tuple[int, str, str]:
    """Run `erasure explain ...` in-process over the runtime's config; exit code, stdout, stderr."""
    code = main(["explain", "--config", str(rt.config.path), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_story_is_a_table_oldest_first_ending_in_one_line(
        rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0; a header, the events received first, and a last line `now: ...` naming what waits and its runbook."""
    code, out, _ = run(capsys, rt, request_id)
    lines = out.rstrip("\n").splitlines()
    assert code == 0
    header = next(i for i, line in enumerate(lines) if line.startswith("AT"))
    assert lines[header].split() == ["AT", "SYSTEM", "EVENT", "WHAT"]
    assert lines[header + 1].split()[2] == "received"
    assert lines[-1].startswith("now: desk: an open task waiting for a person")
    assert "docs/runbook.md#a-manual-task-waiting-for-a-person" in lines[-1]


def test_json_has_events_and_now(rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--json`: events of {at, event, system?, ..., detail}, the system only where one is concerned, and now
    with state, system, reason, action, runbook."""
    code, out, _ = run(capsys, rt, request_id, "--json")
    told = json.loads(out)
    assert code == 0
    assert {"request_id", "status", "subject_ref", "events", "now"} <= set(told)
    assert all({"at", "event", "detail"} <= set(e) for e in told["events"])
    assert told["events"][0]["event"] == "received" and "system" not in told["events"][0]
    assert {e["system"] for e in told["events"] if "system" in e} == {"billing", "crm"}
    assert {"state", "system", "reason", "action", "runbook"} <= set(told["now"])
    assert (told["now"]["state"], told["now"]["system"]) == ("manual_task", "desk")


def test_a_failed_request_names_the_system_the_cause_and_the_retry(
        make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    """The last line of a failed request: the system, after how many attempts, why, and `erasure retry ID`."""
    rt = make_runtime(stub("billing", fail_transiently=9))
    request_id = intake.submit(rt, {"user_id": USER_ID}).request_id
    drain(rt)

    _, out, _ = run(capsys, rt, request_id)
    assert out.splitlines()[-1] == (
        "now: billing: failed after 3 attempts (stub billing is briefly unavailable); fix the target, then "
        f"`erasure retry {request_id}` (docs/runbook.md#retry-a-failed-request)")


@pytest.mark.parametrize("as_json", [False, True])
def test_an_unknown_request_is_exit_3_in_one_line(rt: Runtime, capsys: pytest.CaptureFixture[str],
                                                  as_json: bool) -> None:
    """As for `erasure status`: exit 3, one line naming the request, nothing on stdout."""
    code, out, err = run(capsys, rt, NO_SUCH, *(["--json"] if as_json else []))
    assert (code, out) == (3, "")
    assert err.count("\n") == 1 and NO_SUCH in err


def test_no_identifier_value_is_shown(rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither the table nor the JSON holds the subject's identifiers, only its subject_ref."""
    shown = run(capsys, rt, request_id)[1] + run(capsys, rt, request_id, "--json")[1]
    assert USER_ID not in shown and EMAIL not in shown and "zed" not in shown
    assert json.loads(run(capsys, rt, request_id, "--json")[1])["subject_ref"] in shown


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The API over the runtime, in-process."""
    with TestClient(create_app(rt)) as made:
        yield made


def test_the_api_answers_the_same_story(client: TestClient, request_id: str,
                                        capsys: pytest.CaptureFixture[str], rt: Runtime) -> None:
    """GET /v1/requests/{id}/explain (read) answers what `--json` prints; unknown 404; no read scope 403."""
    answer = client.get(f"/v1/requests/{request_id}/explain", headers={"Authorization": f"Bearer {READ}"})
    assert answer.status_code == 200
    assert answer.json() == json.loads(run(capsys, rt, request_id, "--json")[1])
    missing = client.get(f"/v1/requests/{NO_SUCH}/explain", headers={"Authorization": f"Bearer {READ}"})
    assert missing.status_code == 404 and NO_SUCH not in missing.text
    assert client.get(f"/v1/requests/{request_id}/explain",
                      headers={"Authorization": f"Bearer {SUBMIT}"}).status_code == 403
