"""The audit trail: every step of a request is an event chained by SHA-256 to the one before;
`erasure audit verify` finds a changed, removed or inserted event, names where the chain breaks,
and PostgreSQL itself refuses to change or remove an event."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from tests.helpers import MakeRuntime, at_once, drain, stub
from worker.engine import audit, deadlines, fanout, intake
from worker.runtime import Runtime
from worker.store.models import AuditEvent
from worker.surfaces.cli import main


def events(rt: Runtime, request_id: str | None = None) -> list[AuditEvent]:
    """The trail's events (of one request, if given), oldest first."""
    query = select(AuditEvent).order_by(AuditEvent.seq)
    with rt.transaction() as session:
        return list(session.scalars(query if request_id is None else query.where(AuditEvent.request_id == request_id)))


def erased(rt: Runtime, user_id: str = "42") -> str:
    """Submit and play one request; its id."""
    request_id = intake.submit(rt, {"user_id": user_id}).request_id
    drain(rt)
    return request_id


def tamper(rt: Runtime, statement: str, **params: Any) -> None:
    """Change the trail behind the worker's back, as someone with access to the database could."""
    with rt.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def verify(capsys: pytest.CaptureFixture[str], rt: Runtime, *extra: str) -> tuple[int, str, str]:
    """`erasure audit verify` on the runtime's config; exit code, stdout, stderr."""
    code = main(["audit", "verify", "--config", str(rt.config.path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ran(make_runtime: MakeRuntime) -> tuple[Runtime, str]:
    """A request played through the pipeline: one system erased at once, one after a transient
    failure, one kept under a lock."""
    rt = make_runtime(stub("crm") + stub("mail", fail_transiently=1) + stub("vault", locked_for_seconds=60))
    return rt, erased(rt)


def test_a_request_leaves_each_step_in_the_trail(ran: tuple[Runtime, str]) -> None:
    """Received, resolved, every system's transitions and the settling are events of that request, in order."""
    rt, request_id = ran
    steps = [(e.type, e.system) for e in events(rt, request_id)]
    assert steps[:3] == [("request.received", None), ("request.resolved", None), ("request.in_progress", None)]
    assert steps[-1] == ("request.completed", None)
    mail = [t for t, s in steps if s == "mail"]
    assert mail == ["system.running", "system.pending", "system.running", "system.erased"]
    assert [t for t, s in steps if s == "vault"] == ["system.running", "system.exempt"]


def test_the_chain_links_each_event_to_the_one_before(ran: tuple[Runtime, str]) -> None:
    """Seq counts from 1, each prev_hash is the hash before it, each hash is recomputable from the event."""
    rt, _ = ran
    trail = events(rt)
    assert [e.seq for e in trail] == list(range(1, len(trail) + 1))
    assert [e.prev_hash for e in trail] == [audit.GENESIS] + [e.hash for e in trail[:-1]]
    for e in trail:
        assert audit.event_hash(e.seq, e.at, e.type, e.request_id, e.system, e.data, e.prev_hash) == e.hash


def test_settled_systems_carry_items_reason_and_an_evidence_digest(ran: tuple[Runtime, str]) -> None:
    """An erased system's event has its item count and evidence digest; an exempt one its reason and recheck."""
    rt, request_id = ran
    by_type = {(e.type, e.system): e.data for e in events(rt, request_id)}
    assert by_type[("system.erased", "crm")]["items"] == 1
    assert len(by_type[("system.erased", "crm")]["evidence_sha256"]) == 64
    vault = by_type[("system.exempt", "vault")]
    assert vault["reason"].startswith("stub lock until ") and vault["recheck_at"].endswith("Z")


def test_verify_passes_and_prints_the_count_and_head(ran: tuple[Runtime, str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """An untouched trail: exit 0, the number of events checked and the head's hash."""
    rt, _ = ran
    trail = events(rt)
    code, out, _ = verify(capsys, rt)
    assert code == 0
    assert f"{len(trail)} events checked" in out and trail[-1].hash in out


def test_a_tampered_event_is_found_at_its_seq(ran: tuple[Runtime, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Changing one event's data breaks the chain at that event: exit 1, one line naming it."""
    rt, _ = ran
    tamper(rt, "UPDATE audit_events SET data = :data WHERE seq = 5", data='{"items": 0}')
    code, out, err = verify(capsys, rt)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "broken at event 5:" in err and "content" in err


def test_a_rehashed_event_breaks_the_link_after_it(ran: tuple[Runtime, str]) -> None:
    """Whoever changes an event and recomputes its hash still breaks the next event's link."""
    rt, _ = ran
    fifth = events(rt)[4]
    forged = audit.event_hash(5, fifth.at, fifth.type, fifth.request_id, fifth.system, {"items": 0}, fifth.prev_hash)
    tamper(rt, "UPDATE audit_events SET data = :data, hash = :hash WHERE seq = 5", data='{"items": 0}', hash=forged)
    verdict = audit.verify(rt.transaction)
    assert (verdict.broken, verdict.events) == (6, 5)
    assert "does not link to the hash of event 5" in (verdict.problem or "")


def test_a_deleted_event_is_found(ran: tuple[Runtime, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Removing an event breaks the chain at the one after it, which names the gap."""
    rt, _ = ran
    tamper(rt, "DELETE FROM audit_events WHERE seq = 3")
    code, _, err = verify(capsys, rt)
    assert code == 1
    assert "broken at event 4: event 3 is missing" in err


def test_a_certificate_head_is_checked_against_the_chain(ran: tuple[Runtime, str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--head passes for a head in the chain, fails (1) for one that is not, and refuses (2) what is no hash."""
    rt, _ = ran
    head = events(rt)[-1].hash
    assert verify(capsys, rt, "--head", head)[0] == 0
    code, _, err = verify(capsys, rt, "--head", "f" * 64)
    assert code == 1 and "is not in the chain" in err
    code, _, err = verify(capsys, rt, "--head", "ABC")
    assert code == 2 and err.count("\n") == 1


def test_a_rolled_back_transaction_leaves_no_event(make_runtime: MakeRuntime) -> None:
    """Events belong to their transaction: one that fails appends nothing and keeps the chain whole."""
    rt = make_runtime(stub("crm"))
    request_id = erased(rt)
    before = len(events(rt))
    with pytest.raises(RuntimeError), rt.transaction() as session:
        audit.record(session, "request.extended", request_id, months=1)
        raise RuntimeError("abandoned")
    assert len(events(rt)) == before
    assert audit.verify(rt.transaction).broken is None


def test_retry_and_extend_are_audited_with_their_reasons(make_runtime: MakeRuntime) -> None:
    """`retry` and `extend` leave their own events; the DPO's reason is kept as typed."""
    rt = make_runtime(stub("crm", fail_permanently=True))
    request_id = erased(rt)
    deadlines.extend(rt, request_id, 2, "complex request, told the subject on the 3rd")
    fanout.retry(rt, request_id)
    by_type = {e.type: e.data for e in events(rt, request_id)}
    assert by_type["request.extended"]["months"] == 2
    assert by_type["request.extended"]["reason"] == "complex request, told the subject on the 3rd"
    assert by_type["request.retried"] == {"systems": ["crm"]}


def test_postgresql_refuses_to_change_or_remove_an_event(make_runtime: MakeRuntime, postgres_url: str) -> None:
    """On PostgreSQL, UPDATE, DELETE and TRUNCATE of the trail fail, and the chain stays as it was."""
    rt = make_runtime(stub("crm"), store_url=postgres_url)
    erased(rt)
    before = [(e.seq, e.hash) for e in events(rt)]
    for statement in ("UPDATE audit_events SET data = '{}' WHERE seq = 2", "DELETE FROM audit_events WHERE seq = 2",
                      "TRUNCATE audit_events"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            tamper(rt, statement)
    assert [(e.seq, e.hash) for e in events(rt)] == before
    assert audit.verify(rt.transaction).events == len(before)


def test_concurrent_appends_keep_one_chain(make_runtime: MakeRuntime, store_url: str) -> None:
    """Transactions appending from many threads at once all commit, onto one unbroken chain."""
    rt = make_runtime(stub("crm"), store_url=store_url)
    workers, rounds = 6, 15

    def append(worker: int) -> None:
        for n in range(rounds):
            with rt.transaction() as session:
                audit.record(session, "test.append", None, worker=worker, n=n, part=1)
                audit.record(session, "test.append", None, worker=worker, n=n, part=2)

    assert at_once(*(functools.partial(append, w) for w in range(workers))) == []
    verdict = audit.verify(rt.transaction)
    assert (verdict.broken, verdict.events) == (None, workers * rounds * 2)
    trail = events(rt)
    for first, second in zip(trail[::2], trail[1::2], strict=True):  # a transaction's events stay together
        assert (second.data["worker"], second.data["n"], second.data["part"]) == (
            first.data["worker"], first.data["n"], 2)
