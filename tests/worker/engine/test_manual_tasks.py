"""A manual system (a person erases it) stays `pending` as an open task: no message, no attempt, never
re-sent by the reconciler, until a person settles it done or not found through the path every outcome
takes; revealing the subject's identifiers to that person is audited; a task due soon is warned of once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.helpers import ListDispatch, MakeRuntime, Recorder, drain, stored, stub, system_table
from worker.config import parse
from worker.engine import fanout, intake, manual_tasks, passes, reconcile
from worker.errors import ConfigError, InputError, NoSuchRequest, RefusedError
from worker.runtime import Runtime
from worker.store.models import AuditEvent, Request, SystemStatus, SystemTask, utcnow
from worker.surfaces import report, views

INSTRUCTIONS = "In the helpdesk, search the customer,\ndelete their tickets, then empty the trash."
DESK = system_table("desk", "manual", uses=["email"], instructions=INSTRUCTIONS)
USER_ID, EMAIL = "4242", "zed.secret@example.com"
LONG_AGO = timedelta(days=3)  # past every grace, lease and backoff of the test config


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    """A stub system and a manual one looked up by email."""
    return make_runtime(stub("crm") + DESK)


def started(rt: Runtime, **subject: str) -> str:
    """A request submitted and played as far as the worker takes it."""
    request_id = intake.submit(rt, subject or {"user_id": USER_ID, "email": EMAIL.upper()}).request_id
    drain(rt)
    return request_id


def systems(rt: Runtime, request_id: str) -> dict[str, dict[str, Any]]:
    """The status JSON's systems of one request, by name."""
    return {s["system"]: s for s in views.status(rt, request_id)["systems"]}


def audited(rt: Runtime, request_id: str, kind: str) -> list[dict[str, Any]]:
    """The data of one request's audit events of a type, oldest first."""
    with rt.transaction() as session:
        return [dict(data) for data in session.scalars(
            select(AuditEvent.data).where(AuditEvent.request_id == request_id, AuditEvent.type == kind)
            .order_by(AuditEvent.seq))]


def messages(rt: Runtime) -> list[tuple[Any, ...]]:
    """The messages sent and not yet played."""
    assert isinstance(rt.dispatch, ListDispatch)
    return rt.dispatch.sent


def test_a_manual_system_stays_pending_with_no_message_and_no_attempt(rt: Runtime) -> None:
    """Fan-out erases the other systems and sends the manual one nothing: it waits, pending, attempts 0,
    listed as an open task with its instructions; the request stays in progress."""
    request_id = started(rt)
    found = systems(rt, request_id)
    assert found["crm"]["status"] == "erased"
    assert (found["desk"]["status"], found["desk"]["attempts"]) == ("pending", 0)
    assert views.status(rt, request_id)["status"] == "in_progress"
    [task] = manual_tasks.open_tasks(rt)
    assert (task.request_id, task.system, task.identifier_types, task.instructions) == (
        request_id, "desk", ("email",), INSTRUCTIONS)


def test_the_reconciler_never_resends_a_manual_system_nor_counts_attempts(
        make_runtime: MakeRuntime, store_url: str) -> None:
    """Long past every grace, the reconciler re-sends a lost stub message but not the manual task."""
    rt = make_runtime(stub("crm") + DESK, store_url=store_url)
    request_id = intake.submit(rt, {"email": EMAIL}).request_id
    other = intake.submit(rt, {"user_id": "7"}).request_id
    for start in [m for m in messages(rt) if m[0] == "start"]:
        fanout.start(rt, start[1])
    messages(rt).clear()  # crm's message for `other` was lost
    with rt.transaction() as session:
        session.execute(update(Request).values(received_at=utcnow() - LONG_AGO))
    for _ in range(3):
        reconcile.reconcile(rt)
    sent = [m for m in messages(rt) if m[0] == "erase"]
    assert [(m[1], m[2]) for m in sent] == [(other, "crm")]
    assert systems(rt, request_id)["desk"]["attempts"] == 0


def test_a_stray_erase_message_for_a_manual_system_does_nothing(rt: Runtime) -> None:
    """A message for a manual system (from an older version, say) claims nothing and calls no connector."""
    request_id = started(rt)
    passes.erase_system(rt, request_id, "desk")
    assert (systems(rt, request_id)["desk"]["status"], systems(rt, request_id)["desk"]["attempts"]) == ("pending", 0)


def test_done_settles_erased_with_items_and_evidence_and_completes_the_request(
        make_runtime: MakeRuntime, store_url: str) -> None:
    """Done: the system is erased with the items and the person's evidence, the request completes,
    and the trail records who (task.done, and system.erased with `by`)."""
    rt = make_runtime(stub("crm") + DESK, store_url=store_url)
    request_id = started(rt)
    status = manual_tasks.done(rt, request_id, "desk", 3, "deleted 3 tickets in the helpdesk", "Ana (support)")
    desk = systems(rt, request_id)["desk"]
    assert status == "completed" and views.status(rt, request_id)["status"] == "completed"
    assert (desk["status"], desk["items_erased"], desk["attempts"]) == ("erased", 3, 1)
    assert audited(rt, request_id, "task.done") == [{"by": "Ana (support)", "items": 3}]
    assert audited(rt, request_id, "system.erased")[-1]["by"] == "Ana (support)"
    evidence = report.build(rt, request_id)["systems"][1]["evidence"]
    assert evidence["manual"]["evidence"] == "deleted 3 tickets in the helpdesk" and evidence["items"] == 3
    assert "erased by hand by Ana (support)" in report.markdown(report.build(rt, request_id))
    assert manual_tasks.open_tasks(rt) == []


def test_not_found_settles_not_found_and_completes_the_request(make_runtime: MakeRuntime) -> None:
    """Not found: the system settles not_found; a request whose only system it was completes, nothing found."""
    rt = make_runtime(DESK)
    request_id = started(rt, email=EMAIL)
    assert manual_tasks.not_found(rt, request_id, "desk", "no user under that address", "Ana") == "completed"
    shown = views.status(rt, request_id)
    assert shown["systems"][0]["status"] == "not_found" and shown["nothing_found"] is True
    assert audited(rt, request_id, "task.not_found") == [{"by": "Ana", "items": 0}]


def test_a_task_that_is_not_open_is_refused(rt: Runtime) -> None:
    """Settled already, a system the worker erases, a system the request lacks, an unknown request:
    each refused, saying why."""
    request_id = started(rt)
    manual_tasks.done(rt, request_id, "desk", 1, "deleted the user", "Ana")
    with pytest.raises(RefusedError, match="is erased .settled.: it is no open task"):
        manual_tasks.not_found(rt, request_id, "desk", "looked again", "Bo")
    with pytest.raises(RefusedError, match="crm of request .* is a stub system"):
        manual_tasks.done(rt, request_id, "crm", 1, "deleted", "Ana")
    with pytest.raises(InputError, match="has no system 'nope'"):
        manual_tasks.reveal(rt, request_id, "nope", "Ana")
    with pytest.raises(NoSuchRequest):
        manual_tasks.show(rt, "00000000-0000-4000-8000-000000000000", "desk")
    assert audited(rt, request_id, "task.not_found") == []


@pytest.mark.parametrize(("evidence", "by", "problem"), [
    ("deleted Zed.Secret@Example.COM from the helpdesk", "Ana", "evidence: it holds the subject's email"),
    ("deleted ticket of user 4242", "Ana", "evidence: it holds the subject's user_id"),
    ("deleted the tickets", "zed.secret@example.com", "by: it holds the subject's email"),
    ("deleted\nthe tickets", "Ana", "evidence: one line"),
    ("deleted \u202ethe tickets", "Ana", "evidence: one line"),
    ("x" * 501, "Ana", "evidence: at most 500"),
    ("   ", "Ana", "evidence: required"),
    ("deleted the tickets", "", "by: required"),
])
def test_evidence_and_by_are_one_line_without_the_subjects_values(
        rt: Runtime, evidence: str, by: str, problem: str) -> None:
    """Text that would be kept for good is refused when it holds an identifier value (any case), is no
    single line, or is empty or too long; the message names the type, never the value; nothing changes."""
    request_id = started(rt)
    with pytest.raises(InputError) as refused:
        manual_tasks.done(rt, request_id, "desk", 2, evidence, by)
    assert str(refused.value).startswith(problem)
    assert "zed" not in str(refused.value).lower() and USER_ID not in str(refused.value)
    assert systems(rt, request_id)["desk"]["status"] == "pending"


def test_done_needs_at_least_one_item(rt: Runtime) -> None:
    """Done with no item is refused: nothing found is `not_found`."""
    request_id = started(rt)
    for items in (0, -1):
        with pytest.raises(InputError, match="at least 1"):
            manual_tasks.done(rt, request_id, "desk", items, "deleted nothing", "Ana")


def test_reveal_shows_the_systems_types_and_audits_who_never_the_values(rt: Runtime) -> None:
    """Reveal gives the values of the types the system is looked up by (email, not user_id) and records
    task.revealed with who and the types, without a value."""
    request_id = started(rt)
    assert manual_tasks.reveal(rt, request_id, "desk", "Ana (support)") == {"email": (EMAIL,)}
    [event] = audited(rt, request_id, "task.revealed")
    assert event == {"by": "Ana (support)", "identifier_types": ["email"]}
    with rt.transaction() as session:
        trail = " ".join(str(d) for d in session.scalars(select(AuditEvent.data)))
    assert EMAIL not in trail and USER_ID not in trail


def test_reveal_refuses_a_settled_task_and_says_when_identifiers_are_gone(rt: Runtime) -> None:
    """Nothing is revealed for a settled task; a request that dropped its identifiers says so."""
    request_id = started(rt)
    with rt.transaction() as session:
        session.execute(update(Request).values(sealed_identifiers=None))
    with pytest.raises(RefusedError, match="holds no identifiers any more"):
        manual_tasks.reveal(rt, request_id, "desk", "Ana")
    manual_tasks.not_found(rt, request_id, "desk", "looked, nothing there", "Ana")
    with pytest.raises(RefusedError, match="no open task"):
        manual_tasks.reveal(rt, request_id, "desk", "Ana")
    assert audited(rt, request_id, "task.revealed") == []


def test_a_training_request_skips_a_manual_system_unless_it_is_marked_training(make_runtime: MakeRuntime) -> None:
    """An objection to training use records a manual system skipped, unless it says training = true."""
    rt = make_runtime(stub("lake", training=True) + DESK
                      + system_table("labels", "manual", instructions="Remove their labels.", training=True))
    request_id = intake.submit(rt, {"email": EMAIL}, scope="training").request_id
    drain(rt)
    found = systems(rt, request_id)
    assert (found["desk"]["status"], found["labels"]["status"]) == ("skipped", "pending")
    assert [t.system for t in manual_tasks.open_tasks(rt)] == ["labels"]


def test_a_task_due_soon_is_warned_of_once(
        make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch, store_url: str) -> None:
    """Within task_reminder_days of its deadline an open task gets one `task.due_soon` (and its audit
    event), however many passes run; a task due later gets none, nor one already settled."""
    rt = make_runtime(stub("crm") + DESK, store_url=store_url, worker={"task_reminder_days": 5})
    soon, later, settled = (started(rt, email=f"{n}@example.com") for n in ("a", "b", "c"))
    with rt.transaction() as session:
        for request_id, days in ((soon, 4), (later, 6), (settled, 1)):
            session.execute(update(Request).where(Request.id == request_id)
                            .values(deadline=utcnow() + timedelta(days=days)))
    manual_tasks.done(rt, settled, "desk", 1, "deleted", "Ana")
    recorder = Recorder()
    monkeypatch.setattr(manual_tasks, "log", recorder)
    assert [reconcile.reconcile(rt)["tasks_due_soon"] for _ in range(3)] == [1, 0, 0]
    [warning] = recorder.named("task.due_soon")
    assert (warning["request_id"], warning["system"], warning["overdue"]) == (soon, "desk", False)
    assert len(audited(rt, soon, "task.due_soon")) == 1 and audited(rt, later, "task.due_soon") == []


def test_reminders_off_with_zero_days(make_runtime: MakeRuntime) -> None:
    """task_reminder_days = 0 never warns, even of an overdue task."""
    rt = make_runtime(DESK, worker={"task_reminder_days": 0})
    request_id = started(rt, email=EMAIL)
    with rt.transaction() as session:
        session.execute(update(Request).values(deadline=utcnow() - timedelta(days=1)))
    assert manual_tasks.remind_due(rt) == 0 and audited(rt, request_id, "task.due_soon") == []


def test_a_retention_that_ends_reopens_the_task_without_a_message(rt: Runtime) -> None:
    """An exempt manual system whose recheck comes back is an open task again, with no erase message."""
    request_id = started(rt)
    with rt.transaction() as session:
        session.execute(update(SystemTask).where(SystemTask.system == "desk").values(
            status=SystemStatus.EXEMPT, reason="retained", recheck_at=utcnow() - timedelta(minutes=1)))
    assert reconcile.recheck_exemptions(rt) == 1
    assert messages(rt) == [] and [t.request_id for t in manual_tasks.open_tasks(rt)] == [request_id]
    assert stored(rt, request_id).systems[1].status == SystemStatus.PENDING


@pytest.mark.parametrize("days", [-1, 93, True, 1.5])
def test_a_bad_task_reminder_days_is_one_line_naming_the_key(days: object) -> None:
    """`[worker] task_reminder_days` is a whole number of days from 0 (never) to 92; else start-up stops."""
    raw = {"identifiers": {"email": {"pattern": ".+@.+"}}, "worker": {"task_reminder_days": days},
           "systems": [{"name": "desk", "kind": "manual", "instructions": "Delete the user."}]}
    with pytest.raises(ConfigError, match=r"^erasure.toml: worker: task_reminder_days: "):
        parse(raw, Path("erasure.toml"))
