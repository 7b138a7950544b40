"""`erasure explain`: one request's story, oldest first, told from its audit trail and its rows in the
store (received, started, each system's attempts with their outcome, cause and wait, leases taken and
lost, re-sends, retries, exemptions, extensions, flags, manual tasks), and what it waits for now
(worker.engine.diagnosis). It only reads. No identifier's value can appear: the trail never holds one,
the store keeps them sealed and this reads neither them nor the free text a sender gave."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from worker.engine import audit, diagnosis
from worker.engine.diagnosis import Now
from worker.engine.reconcile import PASSES
from worker.errors import NoSuchRequest
from worker.runtime import Runtime
from worker.store.models import AuditEvent, Counter, FlagState, ModelFlag, Request, SystemStatus, utcnow

FAILURES = ("attempt_failed", "lease_lost", "handed_back", "failed")  # story events a stored error may explain


@dataclass(frozen=True)
class Event:
    """One step of a request's story: when, what (`event`), at which system, its fields, in words."""

    at: datetime
    event: str
    detail: str
    system: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As `erasure explain --json` lists it."""
        shown = {"at": audit.stamp(self.at), "event": self.event, **({"system": self.system} if self.system else {})}
        return {**shown, **{k: v for k, v in self.fields.items() if k not in shown}, "detail": self.detail}


@dataclass(frozen=True)
class Explained:
    """A request's story and what it waits for now."""

    request_id: str
    status: str
    subject_ref: str
    received_at: datetime
    deadline: datetime
    events: Sequence[Event]
    now: Now

    def to_json(self) -> dict[str, Any]:
        """As `erasure explain --json` prints it and `GET /v1/requests/{id}/explain` answers."""
        return {"request_id": self.request_id, "status": self.status, "subject_ref": self.subject_ref,
                "received_at": audit.stamp(self.received_at), "deadline": audit.stamp(self.deadline),
                "events": [e.to_json() for e in self.events], "now": self.now.to_json()}


def explain(rt: Runtime, request_id: str, now: datetime | None = None) -> Explained:
    """One request's story and diagnosis, as of `now` (default: now); NoSuchRequest if unknown."""
    now = now or utcnow()
    with rt.transaction() as session:
        request = session.get(Request, request_id, options=[selectinload(Request.systems)])
        if request is None:
            raise NoSuchRequest(f"no request {request_id[:100]}")
        rows = session.execute(select(AuditEvent.at, AuditEvent.type, AuditEvent.system, AuditEvent.data)
                               .where(AuditEvent.request_id == request_id).order_by(AuditEvent.seq)).all()
        open_flags = session.scalar(select(func.count()).select_from(ModelFlag).where(
            ModelFlag.request_id == request_id, ModelFlag.state == FlagState.OPEN)) or 0
        last_pass = session.scalar(select(Counter.updated_at).where(Counter.name == PASSES))
        events = story(request, rows)
        found = diagnosis.diagnose(rt.config, request, events_by_system(events), open_flags, last_pass, now)
        return Explained(request.id, request.status, request.subject_ref, request.received_at, request.deadline,
                         events, found)


def story(request: Request, rows: Sequence[Any]) -> list[Event]:
    """The audit trail's events of a request in words, with the store's re-sends and each system's
    last error (the trail keeps no error's text) put where they belong, oldest first."""
    attempts: dict[str, int] = {}
    told = [_told(at, type_, system, data, attempts) for at, type_, system, data in rows]
    tasks = {t.system: t for t in request.systems}
    for system, task in tasks.items():  # the stored error explains the system's last failure
        last = next((i for i in range(len(told) - 1, -1, -1) if told[i].system == system), None)
        if last is not None and task.error and told[last].event in FAILURES:
            told[last] = dataclasses.replace(told[last], detail=f"{told[last].detail}; cause: {task.error}",
                                             fields={**told[last].fields, "cause": task.error})
        if last is not None and task.status == SystemStatus.RUNNING and told[last].event == "attempt":
            told[last] = dataclasses.replace(told[last], detail=f"{told[last].detail}, until "
                                             f"{audit.stamp(task.lease_until) or 'no end'}",
                                             fields={**told[last].fields, "lease_until": audit.stamp(task.lease_until)})
        if task.requeues and task.queued_at is not None:
            told.append(Event(task.queued_at, "resent", f"its message not taken, the reconciler sent it again "
                              f"({task.requeues} time(s) so far)", system, {"requeues": task.requeues}))
    if request.requeues and request.queued_at is not None:
        told.append(Event(request.queued_at, "restarted", f"not started, the reconciler sent its start again "
                          f"({request.requeues} time(s) so far)", None, {"requeues": request.requeues}))
    return sorted(told, key=lambda e: e.at)  # stable: the trail's order within a second


def events_by_system(events: Sequence[Event]) -> dict[str | None, list[Event]]:
    """The story's events of each system (None: the request's own)."""
    found: dict[str | None, list[Event]] = {}
    for event in events:
        found.setdefault(event.system, []).append(event)
    return found


def _told(at: datetime, type_: str, system: str | None, data: Mapping[str, Any], attempts: dict[str, int]) -> Event:
    """One audit event in the story's words; `attempts` tracks each system's last attempt taken."""
    attempt, previous = data.get("attempt"), data.get("previous")
    numbered = {"attempt": attempt} if attempt is not None else {}
    if system is not None and type_.startswith("system."):
        return _system_event(at, type_.removeprefix("system."), system, data, attempts, numbered)
    if type_ == "request.received" and previous is None:
        systems = data.get("systems", [])
        return Event(at, "received", f"{len(systems)} system(s): {', '.join(systems)}; scope {data.get('scope')}; "
                     f"deadline {data.get('deadline')}", None,
                     {k: data[k] for k in ("systems", "scope", "deadline", "identifier_types") if k in data})
    if type_ == "request.resolved":
        types = data.get("identifier_types", {})
        return Event(at, "resolved", "looked for by " + (", ".join(f"{t} ({n} value(s))" for t, n in types.items())
                                                          or "nothing"), None, {"identifier_types": types})
    if type_ in ("request.in_progress", "request.received"):
        started = previous == "received"
        return Event(at, "started" if started else "reopened", "its systems sent to their queues" if started
                     else f"{'in progress' if type_ == 'request.in_progress' else 'received'} again", None)
    if type_ in ("request.completed", "request.failed"):
        before = " before it started" if previous == "received" else ""
        return Event(at, type_.removeprefix("request."), f"the request {type_.removeprefix('request.')}{before}")
    if type_ == "request.retried":
        return Event(at, "retried", f"retried{_by(data)}: {', '.join(data.get('systems', [])) or 'resolution'} "
                     "sent again with fresh attempts", None, dict(data))
    if type_ == "request.extended":
        return Event(at, "extended", f"deadline {data.get('deadline')} (was {data.get('original_deadline')}), "
                     f"{data.get('months')} month(s) more{_by(data)}: {data.get('reason')}", None, dict(data))
    if type_ in ("model.flagged", "model.flag_widened"):
        snapshots = ", ".join(data.get("snapshots", []))
        what = "flagged" if type_ == "model.flagged" else "flag widened"
        return Event(at, what.replace(" ", "_"), f"model {data.get('model')} {data.get('version')} {what}: "
                     f"trained on {snapshots}", None, dict(data))
    if type_.startswith("flag."):
        return Event(at, "flag_moved", f"model {data.get('model')} {data.get('version')}: {previous} -> "
                     f"{type_.removeprefix('flag.')}{_by(data)}: {data.get('reason')}", None, dict(data))
    if type_ in ("task.done", "task.not_found"):
        return Event(at, "task_settled", f"settled by hand by {data.get('by')}: {data.get('items')} item(s)",
                     system, dict(data))
    if type_ == "task.revealed":
        return Event(at, "task_revealed", f"identifiers shown to {data.get('by')} (values never recorded)",
                     system, dict(data))
    if type_ == "task.due_soon":
        return Event(at, "task_reminded", f"open task due {data.get('deadline')}: reminder logged", system,
                     dict(data))
    if type_ == "request.identifiers_dropped":
        kept = ", ".join(data.get("kept_for_replay", [])) or "none"
        return Event(at, "identifiers_dropped", f"its sealed identifiers dropped; kept for a replay at: {kept}",
                     None, dict(data))
    if type_ == "request.replayed":
        return Event(at, "replayed", f"erased again after a restore: {data.get('items')} item(s)", system, dict(data))
    return Event(at, type_.replace(".", "_"), type_, system, dict(data))  # audit data hold no value


def _system_event(at: datetime, to: str, system: str, data: Mapping[str, Any], attempts: dict[str, int],
                  numbered: dict[str, Any]) -> Event:
    """A system's move in the story's words."""
    attempt, previous = data.get("attempt"), data.get("previous")
    if to == "running":
        attempts[system] = attempt or 0
        return Event(at, "attempt", f"attempt {attempt}: lease taken", system, numbered)
    if to == "pending" and previous == "running":
        if data.get("lost") == "lease":
            return Event(at, "lease_lost", f"attempt {attempt} lost: its worker's lease ran out; put back by "
                         "the reconciler", system, numbered)
        if attempt is not None and attempt < attempts.get(system, 0):
            return Event(at, "handed_back", f"attempt {attempt + 1} handed back, not counted (its worker stopped)",
                         system, numbered)
        wait = data.get("retry_in")
        return Event(at, "attempt_failed", f"attempt {attempt} failed"
                     + (f"; next attempt in {wait:g} s" if wait is not None else ""), system,
                     {**numbered, **({"retry_in": wait} if wait is not None else {})})
    if to == "pending":
        why = {"exempt": "its exemption ended: sent again", "failed": "sent again with fresh attempts"}
        return Event(at, "recheck" if previous == "exempt" else "retry", why.get(str(previous), "pending"), system)
    if to in ("erased", "not_found"):
        found = f"{data.get('items')} item(s) erased" if to == "erased" else "nothing found"
        return Event(at, to, f"attempt {attempt}: {found}", system, {**numbered, "items": data.get("items")})
    if to == "failed":
        lost = "its worker's lease ran out on the last attempt" if data.get("lost") == "lease" else "failed for good"
        return Event(at, "failed", f"attempt {attempt}: {lost}" if attempt else "failed before it started",
                     system, numbered)
    if to == "exempt":
        until = f" until {data['recheck_at']}" if data.get("recheck_at") else ""
        return Event(at, "exempt", f"exempt{until}{_by(data)}: {data.get('reason')}", system,
                     {k: data[k] for k in ("reason", "recheck_at", "by") if k in data})
    if to == "skipped":
        return Event(at, "skipped", f"skipped: {data.get('reason')}", system, {"reason": data.get("reason")})
    return Event(at, to, f"now {to}", system, numbered)


def _by(data: Mapping[str, Any]) -> str:
    """Who decided, as the audit event names them (a token's name, "dpo", a person's), if it does."""
    return f" by {data['by']}" if data.get("by") else ""
