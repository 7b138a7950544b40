"""A pass of one system's connector: the rows a message may claim, erased and verified (together,
for a kind that batches; one by one at the system's pace for any other), and each outcome recorded.
A redelivered message finds its rows claimed or settled and stops."""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Sequence

import structlog

from connectors import context, redact
from connectors.base import Connector, Outcome, Subject
from worker import tracing
from worker.engine import claims, fanout, manual_tasks, outcomes, parts
from worker.errors import PermanentError, TransientError, one_line
from worker.runtime import Runtime

log = structlog.get_logger("erasure.pipeline")


def erase_system(rt: Runtime, request_id: str, system: str, also: Sequence[str] = ()) -> None:
    """Claim one system of one request, erase and verify it, record the outcome, settle. A message
    may stand for more requests (`also`: a start's group), and other requests' first attempts at
    the system that are waiting join the pass too: a kind that batches erases them all at once
    (up to `batch_size`); any other erases them one by one, as many as it erases in about
    GROUP_SECONDS (at most `group_size`), and sends the rest of the message's requests on at once
    to its peers. Either way the pass's claims and its outcomes take one transaction each, so the
    store's cost (and the audit trail's append lock) is shared."""
    if manual_tasks.is_manual(rt.config, system):  # a person erases it: its task waits for them (a stray message)
        return
    rows = claims.claimable(rt, system, request_id, also)
    if not rows:  # a copy of a message whose rows are claimed or settled
        return
    if system not in {s.name for s in rt.config.systems}:
        _fail_unconfigured(rt, system, rows)
        return
    connector = rt.connector(system)
    settings = rt.config.worker
    most = settings.batch_size if connector.batches else rt.pace.group(system, settings.group_size)
    rows, rest = rows[:most], rows[most:]
    if rest:
        rt.dispatch.erase(rest[0], system, rt.config.system(system).kind, also=rest[1:])
    batch = claims.claim(rt, rows[0], system, rows[1:], len(rows) if connector.batches else most)
    try:
        if batch and connector.batches:
            batch |= claims.claim_waiting(rt, system, settings.batch_size - len(batch), connector.batch_waits)
        if batch:
            with redact.values(v for subject in batch.values() for v in subject.all_values()):
                _pass(rt, system, connector, dict(batch))
    finally:
        rt.let_go(system, batch)


def _fail_unconfigured(rt: Runtime, system: str, rows: list[str]) -> None:
    """A system taken out of the config while requests still wait for it: each fails, saying so
    (`erasure retry` runs them again once it is back, or a DPO exempts them)."""
    batch = claims.claim(rt, rows[0], system, rows[1:], len(rows))
    try:
        unconfigured = outcomes.Failed(f"system {system} is not in the config", transient=False)
        outcomes.record(rt, system, dict.fromkeys(batch, unconfigured))
    finally:
        rt.let_go(system, batch)


def _pass(rt: Runtime, system: str, connector: Connector, subjects: dict[str, Subject]) -> None:
    """One pass of a connector over the claimed requests, then every outcome in one transaction."""
    results: dict[str, Outcome | outcomes.Failed] = {}
    for request_id, subject in list(subjects.items()):
        problem = rt.config.system(system).problem_with(subject)
        if problem:
            results[request_id] = outcomes.Failed(problem, transient=False)
            del subjects[request_id]
    if len(subjects) > 1:
        log.info("system.batch", system=system, requests=len(subjects))
    if connector.batches and parts.spread(rt, system, connector, subjects):
        outcomes.record(rt, system, results)  # the parts' tasks erase the others, the last settles them
        return
    if connector.batches:
        results |= _erase_together(rt, system, connector, subjects)
    else:
        began, erased = time.monotonic(), 0
        for request_id, subject in subjects.items():
            if erased and time.monotonic() - began > rt.config.worker.lease_seconds / 4:
                break  # the system slowed down: what is left goes back before any lease can run out
            with context.request(request_id):  # a kind that tells a service who asks reads it (http)
                results |= _erase_together(rt, system, connector, {request_id: subject})
            erased += 1
        if erased:
            rt.pace.took(system, time.monotonic() - began, erased)
    outcomes.record(rt, system, results)
    left = [(r, system) for r in subjects if r not in results]
    if left:  # sent again at once, in one message
        fanout.send(rt, claims.hand_back(rt, left, "its pass ran past a quarter of the lease"))


@tracing.erasures  # an `erasure.system` span for each request, when tracing is on
def _erase_together(rt: Runtime, system: str, connector: Connector,
                    subjects: dict[str, Subject]) -> dict[str, Outcome | outcomes.Failed]:
    """Locate, erase and verify the subjects in one go; each request's outcome, or one failure for all."""
    if not subjects:
        return {}
    ids, members = list(subjects), list(subjects.values())
    try:
        outcomes.record_hits(rt, system, dict(zip(ids, connector.locate_many(members), strict=True)))
        done = dict(zip(ids, connector.erase_many(members, functools.partial(outcomes.journal, rt, system, ids)),
                        strict=True))
        erased = {r: outcome for r, outcome in done.items() if isinstance(outcome, Outcome)}
        outcomes.record_hits(rt, system, {r: outcome.snapshots for r, outcome in erased.items()})
        left = dict(zip(erased, connector.verify_many([subjects[r] for r in erased]), strict=True))
    except (TransientError, PermanentError) as exc:
        return dict.fromkeys(ids, _failed(exc))
    except Exception as exc:  # a bug in a connector: fail the system, keep the worker
        # not the traceback's text: its last line is the message, which may carry an identifier
        log.error("system.crashed", system=system, requests=ids, error=type(exc).__name__, where=_frames(exc))
        return dict.fromkeys(ids, outcomes.Failed(f"internal error ({type(exc).__name__})", transient=False))
    results: dict[str, Outcome | outcomes.Failed] = {}
    for request_id, outcome in done.items():
        if not isinstance(outcome, Outcome):  # this subject alone failed; the pass erased the others
            results[request_id] = _failed(outcome)
        elif left[request_id] and not outcome.exempt_reason:  # an exemption has said what it keeps, and why
            results[request_id] = outcomes.Failed(f"{left[request_id]} items still present after erasure",
                                                  transient=True)
        else:
            results[request_id] = outcome
    return results


def _failed(exc: BaseException) -> outcomes.Failed:
    """A connector's error as a failed attempt: transient or not, and how long the system asked to wait."""
    return outcomes.Failed(one_line(exc), transient=isinstance(exc, TransientError),
                           retry_after=getattr(exc, "retry_after", None))


def _frames(exc: BaseException) -> list[str]:
    """Where an exception was raised, as `file:line in function`, without values or source text."""
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)]
