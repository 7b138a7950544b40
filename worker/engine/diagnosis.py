"""What a request waits for now and what to do, in one line with its runbook section (the end of
`erasure explain`): completed, failed (which systems, why), or stuck, and which way: a lease held by a
worker that is gone, a message never delivered, a system pending past its backoff, a manual task
waiting for a person, a reconciler that stopped, a deadline passed."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from worker.config import Config
from worker.engine import audit, manual_tasks
from worker.engine.reconcile import LONGEST_WAIT, grace
from worker.engine.state import nothing_found
from worker.store.models import SETTLED, Request, RequestStatus, SystemStatus, SystemTask

RUNBOOK = "docs/runbook.md"
SECTIONS = {  # each state's section of the runbook (a test checks that each heading is there)
    "completed": "completed-nothing-to-do", "nothing_found": "a-request-where-nothing-was-found",
    "failed": "retry-a-failed-request", "lease_lapsed": "a-lease-held-by-a-worker-that-is-gone",
    "never_started": "a-message-never-delivered", "never_delivered": "a-message-never-delivered",
    "past_backoff": "a-system-pending-past-its-backoff", "manual_task": "a-manual-task-waiting-for-a-person",
    "reconciler": "is-the-reconciler-running", "overdue": "a-request-past-its-deadline",
    "waiting": "waiting-its-turn",
}
INTAKE_QUEUE = "erasure.intake"  # as worker.queue.celery_app names the queues (the engine does not import it)
STALE_PASS = timedelta(minutes=15)  # the reconciler counts as stopped past this (or 3 of its periods)
GAVE_UP = re.compile(r"gave up after (\d+) attempts: (.*)", re.S)
# most urgent first: the one line names the first of these among the systems still open
URGENCY = ("lease_lapsed", "past_backoff", "never_delivered", "manual_task", "retry_waiting", "running", "waiting")
CALM = ("starting", "waiting", "running", "retry_waiting", "settle_missed")  # not stuck: only the deadline may be


class Told(Protocol):
    """A story event as the diagnosis reads it (worker.engine.explain.Event)."""

    @property
    def at(self) -> datetime: ...
    @property
    def event(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Now:
    """What a request waits for now (`state`, at `system`), why, what to do, and the runbook section."""

    state: str
    reason: str
    action: str
    section: str
    system: str | None = None
    overdue: bool = False

    @property
    def runbook(self) -> str:
        """The runbook section's link, relative to the repository."""
        return f"{RUNBOOK}#{SECTIONS[self.section]}"

    def line(self) -> str:
        """The one line: why, what to do, where the runbook says more."""
        return f"{self.reason}; {self.action} ({self.runbook})"

    def to_json(self) -> dict[str, Any]:
        """As `erasure explain --json` prints it under `now`."""
        where = {"system": self.system} if self.system else {}
        return {"state": self.state, **where, "reason": self.reason, "action": self.action, "runbook": self.runbook,
                "overdue": self.overdue, "line": self.line()}


@dataclass(frozen=True)
class Clock:
    """What the diagnosis measures against: now, the worker's settings and the reconciler's last pass."""

    config: Config
    now: datetime
    last_pass: datetime | None

    def ago(self, moment: datetime) -> str:
        """How long before now, roughly, for people."""
        return _span((self.now - moment).total_seconds())

    def reconciler_stopped(self) -> str | None:
        """Why the reconciler counts as stopped (it never ran, or not lately), or None if it runs."""
        if self.last_pass is None:
            return "the reconciler has never run on this store"
        if self.now - self.last_pass > max(STALE_PASS, timedelta(seconds=3 * self.config.worker.reconcile_seconds)):
            return f"the reconciler has not run since {audit.stamp(self.last_pass)} ({self.ago(self.last_pass)} ago)"
        return None


def diagnose(config: Config, request: Request, events: Mapping[str | None, Sequence[Told]], open_flags: int,
             last_pass: datetime | None, now: datetime) -> Now:
    """What the request waits for now; `events` is its story by system (None: the request's own)."""
    clock = Clock(config, now, last_pass)
    open_tasks = [t for t in request.systems if t.status not in SETTLED]
    if request.status == RequestStatus.FAILED:
        found = _failed(request)
    elif request.status == RequestStatus.RECEIVED:
        found = _unstarted(request, clock)
    elif open_tasks:
        started = max((e.at for e in events.get(None, ()) if e.event in ("started", "reopened", "retried")),
                      default=request.received_at)
        found = _with_failed(request, _open(request, open_tasks, events, started, clock))
    elif request.status == RequestStatus.IN_PROGRESS:
        found = Now("settle_missed", "every system has settled but the request was not (its worker vanished in "
                    "between)", _reconciler_will(clock, "settle it at its next pass"), "waiting")
    else:
        return _completed(request, open_flags)
    if request.status == RequestStatus.COMPLETED or request.deadline >= now:
        return found
    late = f"overdue since {audit.stamp(request.deadline)}: {found.reason}"
    if found.state in CALM:
        return Now("overdue", late, f"{found.action}; the subject is owed an answer: tell the DPO", "overdue",
                   found.system, True)
    return Now(found.state, late, found.action, found.section, found.system, True)


def _completed(request: Request, open_flags: int) -> Now:
    waits = [f"{t.system} exempt until {audit.stamp(t.recheck_at)}, erased then by itself" for t in request.systems
             if t.status == SystemStatus.EXEMPT and t.recheck_at is not None]
    flagged = [f"{open_flags} model flag(s) open: tell the owners (`erasure models --flagged`)"] if open_flags else []
    reason = "; ".join([f"completed at {audit.stamp(request.completed_at)}", *waits])
    if nothing_found(request):
        return Now("completed", f"{reason}, nothing found in any system", "check the identifier before telling the "
                   "person their data was erased", "nothing_found")
    return Now("completed", reason, "; ".join(flagged) or "nothing to do", "completed")


def _failed(request: Request) -> Now:
    """Which systems failed and why; or the resolution, for a request that failed before it started."""
    retry = f"`erasure retry {request.id}`"
    if request.error is not None:
        return Now("failed", f"failed before it started: {request.error}",
                   f"fix the resolver's system, then {retry}", "failed")
    failed = [t for t in request.systems if t.status == SystemStatus.FAILED]
    named = "; ".join(f"{t.system}: {_failure(t)}" for t in failed)
    target = "the target" if len(failed) == 1 else "the targets"
    return Now("failed", named or "failed", f"fix {target}, then {retry}", "failed",
               failed[0].system if len(failed) == 1 else None)


def _with_failed(request: Request, found: Now) -> Now:
    """What an open request waits for, and the systems that already failed for good (retried once it fails)."""
    failed = [t for t in request.systems if t.status == SystemStatus.FAILED]
    if not failed:
        return found
    named = "; ".join(f"{t.system}: {_failure(t)}" for t in failed)
    return Now(found.state, f"{found.reason}; and already {named}", f"{found.action}; then, once the request has "
               f"failed, fix {', '.join(t.system for t in failed)} and `erasure retry {request.id}`", found.section,
               found.system)


def _failure(task: SystemTask) -> str:
    """How one system failed, as `failed after 5 attempts (connection refused ...)`."""
    gave_up = GAVE_UP.fullmatch(task.error or "")
    if gave_up:
        return f"failed after {gave_up[1]} attempts ({gave_up[2]})"
    return f"failed for good at attempt {task.attempts} ({task.error or 'no error recorded'})"


def _unstarted(request: Request, clock: Clock) -> Now:
    """A request still `received`: waiting for an intake worker, or its start never delivered."""
    settings = clock.config.worker
    received = audit.stamp(request.received_at)
    if clock.now - request.received_at <= timedelta(seconds=grace(settings)):
        return Now("starting", f"received at {received}, waiting for a worker on {INTAKE_QUEUE} to start it",
                   "nothing yet", "waiting")
    resent = f"; the reconciler sent it again {request.requeues} time(s)" if request.requeues else ""
    retries = sum(settings.longest_backoff(n) for n in range(1, settings.max_attempts))
    restart = request.received_at + timedelta(seconds=grace(settings) + retries)
    return Now("never_started", f"received at {received} and not started in {clock.ago(request.received_at)}: the "
               f"broker did not take its start message, or no worker consumes queue {INTAKE_QUEUE}{resent}",
               f"check that a worker consumes {INTAKE_QUEUE} (`rabbitmqctl list_queues name messages consumers`); "
               + _reconciler_will(clock, f"restart it from {audit.stamp(restart)}")
               + ", or the sender resubmits it with the same idempotency key", "never_started")


def _reconciler_will(clock: Clock, does: str) -> str:
    """What the reconciler does about it, or that it must be started first."""
    stopped = clock.reconciler_stopped()
    if stopped:
        return f"{stopped}: start `erasure beat` (or a worker with --beat), which will {does}"
    return f"the reconciler will {does} (it last ran at {audit.stamp(clock.last_pass)})"


def _open(request: Request, tasks: Sequence[SystemTask], events: Mapping[str | None, Sequence[Told]],
          started: datetime, clock: Clock) -> Now:
    """The most urgent of the open systems' states, the others counted."""
    found = sorted((_system(request, t, events.get(t.system, ()), started, clock) for t in tasks),
                   key=lambda n: URGENCY.index(n.state))
    first, others = found[0], [f"{n.system} {n.state.replace('_', ' ')}" for n in found[1:]]
    if not others:
        return first
    return Now(first.state, f"{first.reason} (also open: {', '.join(others)})", first.action, first.section,
               first.system)


def _system(request: Request, task: SystemTask, told: Sequence[Told], started: datetime, clock: Clock) -> Now:
    """What one open system waits for."""
    s, now, settings = task.system, clock.now, clock.config.worker
    queue = f"erasure.{task.kind}"
    if task.status == SystemStatus.RUNNING:
        lease = task.lease_until
        if lease is None or lease <= now:
            ended = f"ran out at {audit.stamp(lease)} ({clock.ago(lease)} ago)" if lease else "has no end"
            stopped = clock.reconciler_stopped()
            return Now("lease_lapsed", f"{s}: attempt {task.attempts} holds a lease that {ended}: its worker is gone",
                       _reconciler_will(clock, "put it back (the attempt counts as lost)"),
                       "reconciler" if stopped else "lease_lapsed", s)
        return Now("running", f"{s}: attempt {task.attempts} running, its lease until {audit.stamp(lease)}",
                   "nothing: wait for it (should its worker die, the reconciler puts it back after the lease)",
                   "waiting", s)
    since = max([started, *(e.at for e in told), *([task.queued_at] if task.queued_at else [])])
    if manual_tasks.is_manual(clock.config, s):
        return Now("manual_task", f"{s}: an open task waiting for a person since {audit.stamp(since)}",
                   f"the person who erases {s}: `erasure tasks show {request.id} --system {s} --reveal --by NAME`, "
                   "then `erasure tasks done` or `not-found`", "manual_task", s)
    resent = f"; the reconciler re-sent it {task.requeues} time(s)" if task.requeues else ""
    if task.attempts == 0:
        if now - since <= timedelta(seconds=grace(settings)):
            return Now("waiting", f"{s}: sent at {audit.stamp(since)}, waiting in queue {queue}", "nothing yet",
                       "waiting", s)
        return Now("never_delivered", f"{s}: sent at {audit.stamp(since)} and not taken in {clock.ago(since)}: the "
                   f"broker did not take it, or no worker consumes queue {queue}{resent}",
                   f"check that a worker consumes {queue} (`rabbitmqctl list_queues name messages consumers`); "
                   + _reconciler_will(clock, "send it again"), "never_delivered", s)
    failure = next((e for e in reversed(told) if e.event in ("attempt_failed", "lease_lost", "handed_back")), None)
    wait = failure.fields.get("retry_in") if failure is not None else None
    due = (failure.at if failure is not None else since) + timedelta(seconds=wait or 0)
    due = max(due, task.queued_at) if wait is None and task.queued_at else due  # re-sent at once, or later
    cause = f" ({task.error})" if task.error else ""
    if now - due <= timedelta(seconds=grace(settings)):
        return Now("retry_waiting", f"{s}: attempt {task.attempts} did not erase{cause}; attempt {task.attempts + 1} "
                   f"due at {audit.stamp(due)}", "nothing: it is tried again by itself", "waiting", s)
    return Now("past_backoff", f"{s}: attempt {task.attempts + 1} was due at {audit.stamp(due)} and has not started "
               f"({clock.ago(due)} late): no worker consumes queue {queue}, or its message was lost{resent}",
               f"check that a worker consumes {queue} (`rabbitmqctl list_queues name messages consumers`); "
               + _reconciler_will(clock, f"send it again from {audit.stamp(_resend_at(task, clock))}"),
               "past_backoff", s)


def _resend_at(task: SystemTask, clock: Clock) -> datetime:
    """When the reconciler takes a pending system's retry for lost (as reconcile.resend_pending waits)."""
    settings = clock.config.worker
    start = task.started_at or clock.now
    after_attempt = start + timedelta(seconds=settings.lease_seconds + grace(settings)
                                      + settings.longest_backoff(min(task.attempts, settings.max_attempts)))
    if not task.requeues or task.queued_at is None:
        return after_attempt
    return max(after_attempt, task.queued_at + timedelta(seconds=min(grace(settings) * 2 ** task.requeues,
                                                                     LONGEST_WAIT)))


def _span(seconds: float) -> str:
    """A duration for people: 40 s, 12 min, 3 h, 2 days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"
