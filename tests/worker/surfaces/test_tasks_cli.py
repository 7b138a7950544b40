"""`erasure tasks` as the person who erases a manual system uses it: the open tasks (a table, or JSON),
one task with its instructions, its identifiers only with --reveal --by (audited), settling it done or
not found; a task that is not open, or bad text, is one line and exit 2, an unknown request exit 3."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from tests.helpers import MakeRuntime, drain, stub, system_table
from worker.engine import intake
from worker.runtime import Runtime
from worker.store.models import AuditEvent
from worker.surfaces import views
from worker.surfaces.cli import main

INSTRUCTIONS = "Search the customer in the helpdesk.\nDelete their tickets, then the user."
USER_ID, EMAIL = "4242991377", "zed.secret@example.com"
NO_SUCH = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """A stub system and a manual one looked up by email."""
    return make_runtime(stub("crm") + system_table("desk", "manual", uses=["email"], instructions=INSTRUCTIONS))


@pytest.fixture
def request_id(rt: Runtime) -> str:
    """A request played as far as the worker takes it: crm erased, desk an open task."""
    found = intake.submit(rt, {"user_id": USER_ID, "email": EMAIL}).request_id
    drain(rt)
    return found


def run(capsys: pytest.CaptureFixture[str], rt: Runtime, *argv: str) -> tuple[int, str, str]:
    """Run one `erasure tasks ...` command in-process over the runtime's config; exit code, stdout, stderr
    (a usage error exits as argparse does)."""
    try:
        code = main(["tasks", "--config", str(rt.config.path), *argv])
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def revealed(rt: Runtime) -> list[dict[str, object]]:
    """The data of every task.revealed audit event."""
    with rt.transaction() as session:
        return [dict(d) for d in session.scalars(select(AuditEvent.data).where(AuditEvent.type == "task.revealed"))]


def test_tasks_lists_the_open_ones_as_a_table_and_as_json(
        rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The table names the request, system, deadline, types and the instructions' start; --json has
    every field; neither has an identifier's value."""
    code, out, _ = run(capsys, rt)
    header, row = out.splitlines()
    assert code == 0 and header.split() == ["REQUEST", "SYSTEM", "DEADLINE", "LOOK", "UP", "BY", "INSTRUCTIONS"]
    assert row.split()[:2] == [request_id, "desk"] and "Search the customer" in row
    code, out, _ = run(capsys, rt, "--json")
    [task] = json.loads(out)
    assert code == 0 and set(task) == {"request_id", "system", "received_at", "deadline", "overdue",
                                       "identifier_types", "instructions"}
    assert (task["system"], task["identifier_types"], task["instructions"]) == ("desk", ["email"], INSTRUCTIONS)
    assert EMAIL not in out and USER_ID not in out


def test_no_open_task_says_so(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    """With no open task the list says so, and the JSON is an empty list."""
    assert run(capsys, rt)[1] == "no open task\n"
    assert json.loads(run(capsys, rt, "--json")[1]) == []


def test_show_without_reveal_shows_the_instructions_and_no_identifier(
        rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`tasks show` prints the task and its instructions, no value, and records no reveal."""
    code, out, _ = run(capsys, rt, "show", request_id, "--system", "desk")
    assert code == 0 and "Delete their tickets, then the user." in out and "--reveal --by NAME" in out
    assert EMAIL not in out and revealed(rt) == []


def test_show_reveal_prints_the_identifiers_and_audits_who(
        rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--reveal --by prints the system's identifier values and records task.revealed with who, no value."""
    code, out, _ = run(capsys, rt, "show", request_id, "--system", "desk", "--reveal", "--by", "Ana (support)")
    assert code == 0 and f"email         {EMAIL}" in out and USER_ID not in out
    assert revealed(rt) == [{"by": "Ana (support)", "identifier_types": ["email"]}]


def test_reveal_needs_by(rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--reveal without --by is exit 2, one line, and nothing shown or recorded."""
    code, out, err = run(capsys, rt, "show", request_id, "--system", "desk", "--reveal")
    assert (code, out) == (2, "") and "--by" in err and err.count("\n") == 1 and revealed(rt) == []


def test_done_settles_and_completes_the_request(
        rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`tasks done` erases the task with its items and the request completes; the task is gone."""
    code, out, _ = run(capsys, rt, "done", request_id, "--system", "desk", "--items", "3",
                       "--evidence", "deleted 3 tickets and the user", "--by", "Ana")
    assert (code, out.strip()) == (0, f"{request_id}  desk erased by hand (3 item(s)), request completed")
    desk = views.status(rt, request_id)["systems"][1]
    assert (desk["status"], desk["items_erased"]) == ("erased", 3)
    assert run(capsys, rt)[1] == "no open task\n"


def test_not_found_settles_not_found(rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`tasks not-found` settles the task not_found."""
    code, out, _ = run(capsys, rt, "not-found", request_id, "--system", "desk",
                       "--evidence", "no such user in the helpdesk", "--by", "Ana")
    assert code == 0 and out.strip().endswith("desk not found by hand, request completed")
    assert views.status(rt, request_id)["systems"][1]["status"] == "not_found"


@pytest.mark.parametrize(("argv", "says"), [
    (["done", "{id}", "--system", "crm", "--items", "1", "--evidence", "x", "--by", "Ana"], "is a stub system"),
    (["done", "{id}", "--system", "nope", "--items", "1", "--evidence", "x", "--by", "Ana"], "has no system"),
    (["done", "{id}", "--system", "desk", "--items", "0", "--evidence", "x", "--by", "Ana"], "items: "),
    (["done", "{id}", "--system", "desk", "--items", "2", "--evidence", f"removed {EMAIL.upper()}", "--by", "Ana"],
     "evidence: it holds the subject's email"),
    (["done", "{id}", "--system", "desk", "--items", "two", "--evidence", "x", "--by", "Ana"], "invalid int"),
    (["not-found", "{id}", "--system", "desk", "--evidence", "x"], "--by"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
        rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    """Not a manual system, no such system, no items, evidence naming the subject, a missing --by: exit 2,
    one line that never repeats the value, and the task still open."""
    code, out, err = run(capsys, rt, *(request_id if a == "{id}" else a for a in argv))
    assert (code, out) == (2, "") and says in err and err.count("\n") == 1
    assert EMAIL not in err.lower()
    assert views.status(rt, request_id)["systems"][1]["status"] == "pending"


def test_a_settled_task_cannot_be_settled_again(
        rt: Runtime, request_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Settling a task twice: the second is exit 2, saying it is no open task, and changes nothing."""
    run(capsys, rt, "done", request_id, "--system", "desk", "--items", "1", "--evidence", "deleted", "--by", "Ana")
    code, _, err = run(capsys, rt, "not-found", request_id, "--system", "desk", "--evidence", "again", "--by", "Bo")
    assert code == 2 and "is erased (settled): it is no open task" in err
    assert views.status(rt, request_id)["systems"][1]["status"] == "erased"


def test_an_unknown_request_is_exit_3(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    """A request the store does not hold: exit 3 for show and for settling."""
    assert run(capsys, rt, "show", NO_SUCH, "--system", "desk")[0] == 3
    assert run(capsys, rt, "not-found", NO_SUCH, "--system", "desk", "--evidence", "x", "--by", "Ana")[0] == 3
