"""`erasure explain`'s engine: a request's story, oldest first, built from real situations played through
the engine (stub systems, the embedded store), and the one line of what it waits for now: a system failed
after its attempts, a lease held by a worker that is gone, a start or a message never delivered, a retry
past its backoff, a manual task, a deadline passed, a completed request; each line's runbook section exists."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from tests.helpers import (
    NO_BATCH_WAIT,
    OCT,
    ROOT,
    ListDispatch,
    MakeRuntime,
    drain,
    snapshot_system,
    stub,
    system_table,
    write_snapshot,
)
from worker.engine import claims, deadlines, exemptions, explain, fanout, flags, intake, lineage, passes, reconcile
from worker.engine.diagnosis import SECTIONS
from worker.runtime import Runtime
from worker.store.models import FlagState, Request, SystemTask, utcnow

LATER = timedelta(hours=1)  # past every grace and backoff of the test config
DESK = system_table("desk", "manual", uses=["email"], instructions="Delete the customer's tickets.")


def kept(rt: Runtime) -> list[tuple[Any, ...]]:
    """The messages sent and not yet played."""
    assert isinstance(rt.dispatch, ListDispatch)
    return rt.dispatch.sent


def play_one(rt: Runtime) -> None:
    """Play the oldest kept message, as a worker would take it."""
    message = kept(rt).pop(0)
    if message[0] == "start":
        fanout.start(rt, message[1])
    else:
        passes.erase_system(rt, message[1], message[2], message[5])


def started(rt: Runtime, subject: dict[str, str] | None = None) -> str:
    """A request started, whose erase messages were then lost."""
    request_id = intake.submit(rt, subject or {"user_id": "42"}).request_id
    play_one(rt)
    kept(rt).clear()
    return request_id


def of(explained: explain.Explained, system: str | None) -> list[str]:
    """The story's events of one system (None: the request's own), in order."""
    return [e.event for e in explained.events if e.system == system]


def test_a_system_failed_after_its_attempts_names_it_its_cause_and_the_retry(
        make_runtime: MakeRuntime, store_url: str) -> None:
    """Each attempt is in the story with its wait; the line names the system, the cause and `erasure retry ID`
    (on SQLite and PostgreSQL)."""
    rt = make_runtime(stub("billing", fail_transiently=5) + stub("crm"), store_url=store_url)
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)

    told = explain.explain(rt, request_id)
    assert of(told, "billing") == ["attempt", "attempt_failed", "attempt", "attempt_failed", "attempt", "failed"]
    assert all("retry_in" in e.fields for e in told.events if e.event == "attempt_failed")
    assert (told.now.state, told.now.system) == ("failed", "billing")
    assert told.now.line().startswith("billing: failed after 3 attempts (stub billing is briefly unavailable); "
                                      f"fix the target, then `erasure retry {request_id}`")
    assert told.now.runbook == "docs/runbook.md#retry-a-failed-request"


def test_a_permanent_failure_says_it_failed_for_good(make_runtime: MakeRuntime) -> None:
    """A system refused for good at its first attempt says so, with the connector's reason."""
    rt = make_runtime(stub("billing", fail_permanently=True))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)

    assert explain.explain(rt, request_id).now.reason == \
        "billing: failed for good at attempt 1 (stub billing refuses for good)"


def test_a_lapsed_lease_of_a_gone_worker_is_put_back_by_the_reconciler(make_runtime: MakeRuntime) -> None:
    """A running system whose lease ran out is a worker gone; the line says whether the reconciler runs, and
    once it put the system back the story has the lease lost and the next attempt, in order."""
    rt = make_runtime(stub("a"))
    request_id = started(rt)
    assert claims.claim(rt, request_id, "a")  # the worker takes its lease, then vanishes
    past_lease = utcnow() + timedelta(seconds=rt.config.worker.lease_seconds + 60)

    told = explain.explain(rt, request_id, now=past_lease)
    assert (told.now.state, told.now.system) == ("lease_lapsed", "a")
    assert "its worker is gone" in told.now.reason
    assert "never run" in told.now.action and "`erasure beat`" in told.now.action
    assert told.now.runbook == "docs/runbook.md#is-the-reconciler-running"

    reconcile.count_pass(rt, 0)  # a reconciler runs
    told = explain.explain(rt, request_id, now=past_lease)
    assert "the reconciler will put it back" in told.now.action
    assert told.now.runbook == "docs/runbook.md#a-lease-held-by-a-worker-that-is-gone"

    with rt.transaction() as session:  # the lease's time comes
        session.execute(update(SystemTask).values(lease_until=utcnow() - timedelta(seconds=5)))
    assert reconcile.reconcile(rt)["leases_expired"] == 1
    drain(rt)
    told = explain.explain(rt, request_id)
    assert of(told, "a") == ["attempt", "lease_lost", "attempt", "erased"]
    assert told.now.state == "completed"


def test_an_attempt_handed_back_is_not_counted(make_runtime: MakeRuntime) -> None:
    """A claim handed back at shutdown is in the story as handed back, and the system waits for a worker."""
    rt = make_runtime(stub("a"))
    request_id = started(rt)
    claims.claim(rt, request_id, "a")
    claims.hand_back(rt, [(request_id, "a")], "its worker shut down")

    told = explain.explain(rt, request_id)
    assert of(told, "a") == ["attempt", "handed_back"]
    assert "handed back: its worker shut down" in told.events[-1].fields["cause"]
    assert told.now.state == "waiting"


def test_a_request_never_started_blames_the_broker_or_the_intake_queue(make_runtime: MakeRuntime) -> None:
    """A request whose start message was lost waits at first; past the grace it is never started, with the
    queue named and the resubmit the runbook allows."""
    rt = make_runtime(stub("a"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    kept(rt).clear()

    assert explain.explain(rt, request_id).now.state == "starting"
    told = explain.explain(rt, request_id, now=utcnow() + LATER)
    assert told.now.state == "never_started"
    assert "no worker consumes queue erasure.intake" in told.now.reason
    assert "same idempotency key" in told.now.action
    assert told.now.runbook == "docs/runbook.md#a-message-never-delivered"


def test_a_system_message_never_taken_names_its_kind_queue(make_runtime: MakeRuntime) -> None:
    """A system pending with no attempt long after its message was sent was never delivered."""
    rt = make_runtime(stub("a"))
    request_id = started(rt)

    told = explain.explain(rt, request_id, now=utcnow() + LATER)
    assert (told.now.state, told.now.system) == ("never_delivered", "a")
    assert "no worker consumes queue erasure.stub" in told.now.reason

    with rt.transaction() as session:  # received long ago: the reconciler takes the message for lost
        session.execute(update(Request).values(received_at=utcnow() - LATER))
    assert reconcile.resend_pending(rt) == 1
    told = explain.explain(rt, request_id, now=utcnow() + LATER)
    assert of(told, "a") == ["resent"]
    assert "the reconciler re-sent it 1 time(s)" in told.now.reason


def test_a_retry_past_its_backoff_is_a_lost_retry(make_runtime: MakeRuntime) -> None:
    """After a failed attempt the system waits out its backoff; once the retry is long overdue the line
    says it was due and names the queue."""
    rt = make_runtime(stub("a", fail_transiently=1), worker={"retry_backoff_seconds": 30})
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    play_one(rt)  # the start
    play_one(rt)  # the first attempt fails
    assert kept(rt)[0][4] >= 15  # its retry, with a countdown ...
    kept(rt).clear()  # ... that is lost

    told = explain.explain(rt, request_id)
    assert told.events[-1].event == "attempt_failed" and told.events[-1].fields["retry_in"] >= 15
    assert told.now.state == "retry_waiting"
    assert "attempt 2 due at" in told.now.reason and "stub a is briefly unavailable" in told.now.reason
    told = explain.explain(rt, request_id, now=utcnow() + LATER)
    assert (told.now.state, told.now.system) == ("past_backoff", "a")
    assert "attempt 2 was due at" in told.now.reason and "erasure.stub" in told.now.reason
    assert told.now.runbook == "docs/runbook.md#a-system-pending-past-its-backoff"


def test_an_exemption_and_an_extension_are_in_the_story_in_order(make_runtime: MakeRuntime) -> None:
    """Received, extended, started, the failure, the DPO's exemption with its reason, completed: in order."""
    rt = make_runtime(stub("a", fail_permanently=True) + stub("b"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    deadlines.extend(rt, request_id, 1, "a complex request")
    drain(rt)
    exemptions.exempt(rt, request_id, "a", "Art. 17(3)(e): litigation hold 2026-114")

    told = explain.explain(rt, request_id)
    steps = [(e.event, e.system) for e in told.events]
    wanted = [("received", None), ("extended", None), ("started", None), ("failed", "a"), ("failed", None),
              ("exempt", "a"), ("completed", None)]
    assert [step for step in steps if step in wanted] == wanted
    exempt = next(e for e in told.events if e.event == "exempt")
    assert "litigation hold 2026-114" in exempt.detail
    assert "a complex request" in next(e for e in told.events if e.event == "extended").detail


def test_a_completed_request_has_nothing_to_do(make_runtime: MakeRuntime) -> None:
    """Completed: the line says so and points to its section."""
    rt = make_runtime(stub("a"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)

    told = explain.explain(rt, request_id)
    assert of(told, "a") == ["attempt", "erased"]
    assert told.now.state == "completed" and told.now.action == "nothing to do"
    assert told.now.runbook == "docs/runbook.md#completed-nothing-to-do"


def test_a_flagged_model_is_in_the_story_and_the_line_until_someone_acts(
        make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """A model version trained on a snapshot that held the subject is flagged in the story; the completed line
    asks to tell its owner while the flag is open, and the flag's move is in the story too."""
    write_snapshot(tmp_path / "clicks" / "2026-10-01" / "part-0.parquet", [1, 42])
    rt = make_runtime(snapshot_system(tmp_path / "clicks"), worker=NO_BATCH_WAIT)
    lineage.add(rt, "recsys", "7", [OCT])
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)

    told = explain.explain(rt, request_id)
    flagged = next(e for e in told.events if e.event == "flagged")
    assert (flagged.fields["model"], flagged.fields["version"]) == ("recsys", "7")
    assert "1 model flag(s) open" in told.now.action
    flags.change(rt, "recsys", "7", FlagState.ACKNOWLEDGED, "retraining planned")
    told = explain.explain(rt, request_id)
    assert told.events[-1].event == "flag_moved" and "retraining planned" in told.events[-1].detail
    assert told.now.action == "nothing to do"


def test_an_open_request_names_a_system_that_already_failed(make_runtime: MakeRuntime) -> None:
    """While another system is still open, one failed for good is named with its cause and the retry to come."""
    rt = make_runtime(stub("billing", fail_permanently=True) + DESK)
    request_id = intake.submit(rt, {"user_id": "42", "email": "a@b.c"}).request_id
    drain(rt)

    told = explain.explain(rt, request_id)
    assert told.now.state == "manual_task"
    assert "already billing: failed for good at attempt 1 (stub billing refuses for good)" in told.now.reason
    assert f"`erasure retry {request_id}`" in told.now.action


def test_a_manual_task_waits_for_a_person(make_runtime: MakeRuntime) -> None:
    """An open manual task is what the request waits for, with the command that shows it to the person."""
    rt = make_runtime(stub("crm") + DESK)
    request_id = intake.submit(rt, {"user_id": "42", "email": "a@b.c"}).request_id
    drain(rt)

    told = explain.explain(rt, request_id, now=utcnow() + LATER)  # never taken for a lost message
    assert (told.now.state, told.now.system) == ("manual_task", "desk")
    assert f"`erasure tasks show {request_id} --system desk" in told.now.action


def test_a_deadline_passed_says_overdue(make_runtime: MakeRuntime) -> None:
    """Past its deadline a request running normally is overdue; a stuck one keeps its cause, marked overdue."""
    rt = make_runtime(stub("a") + DESK)
    request_id = started(rt, {"user_id": "42", "email": "a@b.c"})
    with rt.transaction() as session:  # received long ago
        session.execute(update(Request).values(deadline=utcnow() - timedelta(days=1)))
    claims.claim(rt, request_id, "a")

    told = explain.explain(rt, request_id)
    assert told.now.overdue and told.now.reason.startswith("overdue since ")
    assert told.now.state == "manual_task"  # the most urgent of: desk waiting for a person, a running
    with rt.transaction() as session:
        session.execute(update(SystemTask).where(SystemTask.system == "desk").values(status="exempt"))
    told = explain.explain(rt, request_id)
    assert (told.now.state, told.now.overdue) == ("overdue", True)
    assert told.now.runbook == "docs/runbook.md#a-request-past-its-deadline"


def test_every_section_the_line_points_to_is_in_the_runbook() -> None:
    """Each state's runbook section is a heading of docs/runbook.md (outside its code blocks)."""
    text = re.sub(r"```.*?```", "", (ROOT / "docs" / "runbook.md").read_text(), flags=re.S)
    headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, re.M)}
    assert sorted(set(SECTIONS.values()) - headings) == []
