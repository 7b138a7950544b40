"""Deadlines as GDPR counts them: calendar months (Jan 31 + one month = Feb 28 or 29), one
extension of up to two months before the deadline passes (Art. 12(3)), a warning once a request
is overdue, and the counts a DPO dashboard shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import MakeRuntime, Recorder, drain, stub
from worker.config import Deadline, add_months, load
from worker.engine import deadlines, intake, reconcile
from worker.runtime import Runtime
from worker.store.models import Request, utcnow
from worker.surfaces import views
from worker.surfaces.cli import main

USER = "918273645546372819"  # long enough never to turn up in an id or a hash by chance


def at(text: str) -> datetime:
    """A UTC time written as ISO 8601 without its zone."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("start", "months", "expected"), [
    ("2026-01-31T10:00:00", 1, "2026-02-28T10:00:00"),
    ("2028-01-31T10:00:00", 1, "2028-02-29T10:00:00"),  # leap year
    ("2100-01-31T10:00:00", 1, "2100-02-28T10:00:00"),  # a century is no leap year...
    ("2000-01-31T10:00:00", 1, "2000-02-29T10:00:00"),  # ...unless it divides by 400
    ("2026-03-31T23:59:59", 1, "2026-04-30T23:59:59"),
    ("2026-12-31T08:00:00", 2, "2027-02-28T08:00:00"),  # across the year
    ("2027-12-31T08:00:00", 2, "2028-02-29T08:00:00"),
    ("2026-11-15T10:00:00", 1, "2026-12-15T10:00:00"),
])
def test_calendar_months_end_on_the_same_day_or_the_last_of_a_shorter_month(
    start: str, months: int, expected: str,
) -> None:
    """One month after Jan 31 is Feb 28, or Feb 29 in a leap year; the time of day is kept."""
    assert add_months(at(start), months) == at(expected)


def test_a_one_month_deadline_counts_a_calendar_month() -> None:
    """`deadline = "1 month"` gives Feb 28 for a request received on Jan 31; "30 days" gives Mar 2."""
    received = at("2026-01-31T10:00:00")
    assert Deadline(1, "months").after(received) == at("2026-02-28T10:00:00")
    assert Deadline(30, "days").after(received) == at("2026-03-02T10:00:00")


# --- extend ---------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one command in-process; returns the exit code, stdout and stderr (of it alone)."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def with_deadline(rt: Runtime, deadline: datetime, drained: bool = False) -> str:
    """A request whose deadline is set to the given time; played to its end if asked."""
    request_id = intake.submit(rt, {"user_id": USER}).request_id
    if drained:
        drain(rt)
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        request.deadline = deadline
    return request_id


def status(rt: Runtime, request_id: str) -> dict[str, Any]:
    """The status JSON of one request."""
    return views.status(rt, request_id)


def test_extend_moves_the_deadline_by_calendar_months_and_shows_why(
    make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str],
) -> None:
    """Extending by one month from a Jan 31 deadline gives Feb 28; the status keeps months, reason,
    time and the deadline it had."""
    rt = make_runtime(stub("a"))
    request_id = with_deadline(rt, at("2099-01-31T10:00:00"))
    code, out, _ = run(capsys, "extend", request_id, "--months", "1", "--reason", "backups in three systems",
                       "--config", str(rt.config.path))
    assert code == 0 and "2099-02-28T10:00:00Z" in out
    found = json.loads(run(capsys, "status", request_id, "--json", "--config", str(rt.config.path))[1])
    assert found["deadline"] == "2099-02-28T10:00:00Z"
    assert {k: v for k, v in found["extended"].items() if k != "at"} == {
        "months": 1, "reason": "backups in three systems", "original_deadline": "2099-01-31T10:00:00Z"}
    assert found["extended"]["at"].endswith("Z")


def test_extend_by_two_months_reaches_a_leap_day(make_runtime: MakeRuntime) -> None:
    """Two months after a Dec 31 deadline, in a leap year, is Feb 29."""
    rt = make_runtime(stub("a"))
    request_id = with_deadline(rt, at("2095-12-31T10:00:00"))
    deadlines.extend(rt, request_id, 2, "a legacy archive")
    assert status(rt, request_id)["deadline"] == "2096-02-29T10:00:00Z"


def test_a_request_is_extended_once_only(make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    """A second extension is exit 2 with one line saying so, and leaves the first one as it was."""
    rt = make_runtime(stub("a"))
    request_id = with_deadline(rt, at("2099-01-31T10:00:00"))
    deadlines.extend(rt, request_id, 1, "first")
    before = status(rt, request_id)

    code, out, err = run(capsys, "extend", request_id, "--months", "1", "--reason", "again",
                         "--config", str(rt.config.path))
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and "already extended" in err
    assert status(rt, request_id) == before


@pytest.mark.parametrize("arguments", [
    ["--months", "3", "--reason", "r"],
    ["--months", "0", "--reason", "r"],
    ["--months", "one", "--reason", "r"],
    ["--months", "1"],
    ["--months", "1", "--reason", ""],
    ["--months", "1", "--reason", "two\nlines"],
    ["--months", "1", "--reason", "x" * 201],
])
def test_bad_extend_input_is_one_line_exit_2_and_changes_nothing(
    make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str], arguments: list[str],
) -> None:
    """Months other than 1 or 2, or a missing, empty or unprintable reason: exit 2, nothing recorded."""
    rt = make_runtime(stub("a"))
    request_id = with_deadline(rt, at("2099-01-31T10:00:00"))
    code, out, err = run(capsys, "extend", request_id, *arguments, "--config", str(rt.config.path))
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    found = status(rt, request_id)
    assert (found["deadline"], found["extended"]) == ("2099-01-31T10:00:00Z", None)


def test_extending_an_unknown_request_exits_3(make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    """An id the store does not hold is exit 3, one line naming it."""
    rt = make_runtime(stub("a"))
    code, _, err = run(capsys, "extend", "nope", "--months", "1", "--reason", "r", "--config", str(rt.config.path))
    assert code == 3 and len(err.strip().splitlines()) == 1 and "nope" in err


def test_a_completed_request_is_not_extended(make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    """A completed request has no deadline left to extend: exit 2."""
    rt = make_runtime(stub("a"))
    request_id = with_deadline(rt, at("2099-01-31T10:00:00"), drained=True)
    code, _, err = run(capsys, "extend", request_id, "--months", "1", "--reason", "r", "--config", str(rt.config.path))
    assert code == 2 and "completed" in err
    assert status(rt, request_id)["extended"] is None


def test_a_request_past_its_deadline_is_not_extended(make_runtime: MakeRuntime) -> None:
    """Art. 12(3): the extension is decided within the first period, not after the deadline passed."""
    rt = make_runtime(stub("a"))
    request_id = with_deadline(rt, utcnow() - timedelta(days=1))
    with pytest.raises(deadlines.RefusedError, match="passed its deadline"):
        deadlines.extend(rt, request_id, 1, "late")
    assert status(rt, request_id)["extended"] is None


def test_a_failed_request_may_be_extended(make_runtime: MakeRuntime) -> None:
    """A failed request still owes the subject an answer: it may get its extension before a retry."""
    rt = make_runtime(stub("broken", fail_permanently=True))
    request_id = with_deadline(rt, at("2099-01-31T10:00:00"), drained=True)
    assert status(rt, request_id)["status"] == "failed"
    deadlines.extend(rt, request_id, 2, "the system is being restored")
    assert status(rt, request_id)["deadline"] == "2099-03-31T10:00:00Z"


# --- overdue --------------------------------------------------------------------------------


def test_an_overdue_request_is_warned_about_once_across_passes_and_restarts(
    make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`request.overdue` is logged once per request: not again on the next pass, nor by another
    process; it names the request and its subject reference, never an identifier."""
    rt = make_runtime(stub("a"))
    late = with_deadline(rt, utcnow() - timedelta(hours=1))
    with_deadline(rt, utcnow() + timedelta(days=3))
    recorder = Recorder()
    monkeypatch.setattr(deadlines, "log", recorder)

    assert reconcile.reconcile(rt)["overdue"] == 1
    assert reconcile.reconcile(rt)["overdue"] == 0
    restarted = Runtime(load(rt.config.path), dispatch=rt.dispatch)
    try:
        assert deadlines.warn_overdue(restarted) == 0
    finally:
        restarted.close()
    warned = recorder.named("request.overdue")
    assert [w["request_id"] for w in warned] == [late]
    assert warned[0]["subject_ref"] == status(rt, late)["subject_ref"]
    assert USER not in json.dumps(warned)


def test_overdue_lists_open_requests_past_their_deadline(
    make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str],
) -> None:
    """`list --overdue` holds requests in progress or failed past their deadline, not those done or
    still in time; the status says `overdue`."""
    # group_size 1: a start takes no other received request along, so those whose start is dropped stay received
    rt = make_runtime(stub("a") + stub("b", uses=["email"], fail_permanently=True), worker={"group_size": 1})
    past = utcnow() - timedelta(days=1)
    waiting = with_deadline(rt, past)
    failed = intake.submit(rt, {"email": "x@example.com"}).request_id
    done = intake.submit(rt, {"user_id": "7"}).request_id
    in_time = intake.submit(rt, {"user_id": "8"}).request_id
    rt.dispatch.sent = [m for m in rt.dispatch.sent if m[1] != waiting and m[1] != in_time]  # type: ignore[attr-defined]
    drain(rt)
    with rt.transaction() as session:
        for request_id in (failed, done):
            request = session.get(Request, request_id)
            assert request is not None
            request.deadline = past

    listed = json.loads(run(capsys, "list", "--overdue", "--json", "--config", str(rt.config.path))[1])
    assert sorted(r["request_id"] for r in listed) == sorted([waiting, failed])
    assert all(r["overdue"] for r in listed)
    assert (status(rt, done)["overdue"], status(rt, in_time)["overdue"]) == (False, False)


def test_stats_count_overdue_due_soon_and_each_status(
    make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str],
) -> None:
    """`stats --json` counts overdue and due-soon open requests and every status, zeros included."""
    rt = make_runtime(stub("a"))
    now = utcnow()
    with_deadline(rt, now - timedelta(days=1), drained=True)  # completed late: not overdue any more
    with_deadline(rt, now - timedelta(days=1))
    with_deadline(rt, now + timedelta(days=2))
    with_deadline(rt, now + timedelta(days=20))

    code, out, _ = run(capsys, "stats", "--json", "--config", str(rt.config.path))
    assert code == 0
    assert json.loads(out) == {"overdue": 1, "due_soon": 1, "due_within_days": 7,
                               "by_status": {"received": 3, "in_progress": 0, "completed": 1, "failed": 0}}
    wider = json.loads(run(capsys, "stats", "--json", "--due-within", "30", "--config", str(rt.config.path))[1])
    assert (wider["overdue"], wider["due_soon"]) == (1, 2)
    code, out, _ = run(capsys, "stats", "--config", str(rt.config.path))
    assert code == 0 and out.startswith("overdue   1\n")


@pytest.mark.parametrize("days", ["0", "93", "soon"])
def test_stats_refuse_a_bad_window(make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str], days: str) -> None:
    """--due-within takes 1 to 92 days; anything else is exit 2, one line."""
    rt = make_runtime(stub("a"))
    code, out, err = run(capsys, "stats", "--due-within", days, "--config", str(rt.config.path))
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
