"""A request's scope: "all" (the default) erases every system; "training", an objection to training
use, erases only the systems marked `training` (snapshot systems by default) and records the others
`skipped` at intake, never sent and never touched; skipped systems never move, count for completion,
and are left out of `nothing_found`; the `training` key is read for every kind."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from tests.helpers import (
    NO_BATCH_WAIT,
    NOV,
    ListDispatch,
    MakeRuntime,
    drain,
    snapshot_system,
    stub,
    system_table,
    write_config,
    write_snapshot,
)
from worker.config import load
from worker.engine import exemptions, fanout, intake, lineage, reconcile, suppression
from worker.errors import ConfigError, InputError, RefusedError
from worker.runtime import Runtime
from worker.store.models import AuditEvent, Request, SystemTask
from worker.surfaces import views

USER = "42"


@pytest.fixture
def clickstream(tmp_path: Path) -> Path:
    """One snapshot, 2026-11-01, holding users 42 and 7."""
    root = tmp_path / "clickstream"
    write_snapshot(root / "2026-11-01" / "part-0.parquet", [42, 7])
    return root


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    """A SQLite database whose users table holds users 42 and 7."""
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                     "INSERT INTO users VALUES (42, 'Ada'), (7, 'Bob');")
    db.commit()
    db.close()
    return path


def app_db_system(path: Path, **keys: Any) -> str:
    """The TOML of the `app-db` sql system that deletes a user's row."""
    return system_table("app-db", "sql", url=f"sqlite:///{path}", **keys,
                        tables=[{"name": "users", "where": {"id": "user_id"}, "action": "delete"}])


@pytest.fixture
def rt(make_runtime: MakeRuntime, clickstream: Path, app_db: Path) -> Runtime:
    """The clickstream snapshot system (training by default) and the app-db sql system (not)."""
    return make_runtime(snapshot_system(clickstream) + app_db_system(app_db), worker=NO_BATCH_WAIT)


def systems(rt: Runtime, request_id: str) -> dict[str, dict[str, Any]]:
    """The status JSON's systems of one request, by name."""
    return {s["system"]: s for s in views.status(rt, request_id)["systems"]}


def snapshot_users(clickstream: Path) -> list[int]:
    """The user ids the snapshot's file holds now."""
    return pq.read_table(clickstream / "2026-11-01" / "part-0.parquet").column("user_id").to_pylist()


def recorded(rt: Runtime) -> tuple[int, int]:
    """How many requests and system rows the store holds."""
    with rt.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Request)) or 0,
                session.scalar(select(func.count()).select_from(SystemTask)) or 0)


def erase_messages(rt: Runtime) -> list[str]:
    """The systems of the erase messages the runtime has kept and nobody has played yet."""
    assert isinstance(rt.dispatch, ListDispatch)
    return [m[2] for m in rt.dispatch.sent if m[0] == "erase"]


# --- config ------------------------------------------------------------------------------------------


def test_training_defaults_to_true_for_snapshot_and_false_for_the_other_kinds(
    rt: Runtime, make_runtime: MakeRuntime,
) -> None:
    """Unless a system says otherwise, a snapshot system is training data and sql, s3 and stub are not."""
    uploads = system_table("uploads", "s3", bucket="user-uploads", prefixes=["u/{user_id}/"])
    others = make_runtime(stub("crm") + uploads)
    assert [(s.name, s.training) for s in rt.config.systems + others.config.systems] == [
        ("clickstream", True), ("app-db", False), ("crm", False), ("uploads", False)]


def test_every_kind_takes_training_from_its_table(make_runtime: MakeRuntime, clickstream: Path,
                                                   app_db: Path) -> None:
    """`training = true` marks a sql system, `false` unmarks a snapshot system; the kind's reader never sees it."""
    unmarked = system_table("clickstream", "snapshot", location=str(clickstream), where={"user_id": "user_id"},
                            training=False)
    rt = make_runtime(unmarked + app_db_system(app_db, training=True) + stub("crm", training=True))
    assert [(s.name, s.training) for s in rt.config.systems] == [
        ("clickstream", False), ("app-db", True), ("crm", True)]


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_training_must_be_a_boolean(tmp_path: Path, value: Any) -> None:
    """A `training` that is not a boolean stops the config, naming the file, the system and the key."""
    path = write_config(tmp_path, stub("crm", training=value))
    with pytest.raises(ConfigError) as refused:
        load(path)
    assert str(refused.value).startswith(f"{path}: system 'crm': training: must be a bool")


# --- intake ------------------------------------------------------------------------------------------


def test_the_default_scope_is_all_and_erases_every_system(rt: Runtime, clickstream: Path, app_db: Path) -> None:
    """Without a scope, the request is of scope all: the snapshot and the sql system are both erased."""
    request_id = intake.submit(rt, {"user_id": USER}).request_id
    drain(rt)
    status = views.status(rt, request_id)
    assert (status["scope"], status["status"]) == ("all", "completed")
    assert {name: s["status"] for name, s in systems(rt, request_id).items()} == {
        "clickstream": "erased", "app-db": "erased"}
    assert snapshot_users(clickstream) == [7]
    assert sqlite3.connect(app_db).execute("SELECT id FROM users").fetchall() == [(7,)]


def test_a_training_request_erases_only_training_systems_and_leaves_the_others_byte_for_byte(
    make_runtime: MakeRuntime, clickstream: Path, app_db: Path, store_url: str,
) -> None:
    """Scope training: the snapshot loses the subject's rows; the sql database file is unchanged to the byte."""
    rt = make_runtime(snapshot_system(clickstream) + app_db_system(app_db), store_url=store_url,
                      worker=NO_BATCH_WAIT)
    before = app_db.read_bytes()
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    drain(rt)
    status = views.status(rt, request_id)
    assert (status["scope"], status["status"], status["nothing_found"]) == ("training", "completed", False)
    assert {name: s["status"] for name, s in systems(rt, request_id).items()} == {
        "clickstream": "erased", "app-db": "skipped"}
    assert snapshot_users(clickstream) == [7]
    assert app_db.read_bytes() == before


def test_a_skipped_system_is_recorded_at_intake_finished_with_no_attempt(rt: Runtime) -> None:
    """At intake, before any message is played, the sql system is skipped with the reason `scope: training`."""
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    skipped = systems(rt, request_id)["app-db"]
    status = views.status(rt, request_id)
    assert (skipped["status"], skipped["reason"], skipped["attempts"], skipped["items_erased"]) == (
        "skipped", "scope: training", 0, None)
    assert skipped["finished_at"] == status["received_at"]
    assert systems(rt, request_id)["clickstream"]["status"] == "pending"


def test_a_skipped_system_is_never_sent_a_message(rt: Runtime) -> None:
    """The start of a training request sends an erase message to the snapshot system alone."""
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    fanout.start(rt, request_id)
    assert erase_messages(rt) == ["clickstream"]


def test_skipping_is_audited_like_every_status_move(rt: Runtime) -> None:
    """The trail holds the request's scope and one `system.skipped` event with its reason and no attempt."""
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    with rt.transaction() as session:
        events = [(e.type, e.system, e.data) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.seq))]
    assert events[0][0] == "request.received" and events[0][2]["scope"] == "training"
    assert [e for e in events if e[0] == "system.skipped"] == [
        ("system.skipped", "app-db", {"attempt": 0, "reason": "scope: training"})]


def test_a_training_request_flags_the_model_trained_on_the_snapshot(rt: Runtime) -> None:
    """A model version trained on the snapshot that held the subject is flagged, as for an erasure."""
    lineage.add(rt, "recsys", "7", [NOV])
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    drain(rt)
    assert views.status(rt, request_id)["flagged_models"] == [
        {"model": "recsys", "version": "7", "snapshots": [NOV]}]


def test_a_sql_system_marked_training_is_erased_in_a_training_request(
    make_runtime: MakeRuntime, clickstream: Path, app_db: Path,
) -> None:
    """`training = true` on a sql system (a feature table) takes it into a training request."""
    rt = make_runtime(snapshot_system(clickstream) + app_db_system(app_db, training=True), worker=NO_BATCH_WAIT)
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    drain(rt)
    assert {name: s["status"] for name, s in systems(rt, request_id).items()} == {
        "clickstream": "erased", "app-db": "erased"}
    assert sqlite3.connect(app_db).execute("SELECT id FROM users").fetchall() == [(7,)]


@pytest.mark.parametrize("scope", ["everything", "", "Training", 1, ["training"]])
def test_a_bad_scope_is_refused_and_records_nothing(rt: Runtime, scope: Any) -> None:
    """A scope other than "all" or "training" is an InputError naming the field; no row is written."""
    with pytest.raises(InputError, match="^scope: must be one of all, training$"):
        intake.submit(rt, {"user_id": USER}, scope=scope)
    assert recorded(rt) == (0, 0)


def test_a_training_request_no_training_system_can_reach_is_refused(make_runtime: MakeRuntime, app_db: Path) -> None:
    """With no training system among those the subject is in, nothing would be erased: refused, nothing recorded."""
    rt = make_runtime(app_db_system(app_db) + stub("crm"))
    with pytest.raises(InputError, match="no system this subject is in is marked training = true"):
        intake.submit(rt, {"user_id": USER}, scope="training")
    assert recorded(rt) == (0, 0)


def test_an_idempotency_key_resubmitted_with_another_scope_is_refused(rt: Runtime) -> None:
    """The same key with the other scope is a conflict, refused in both directions; with the same scope, a duplicate."""
    first = intake.submit(rt, {"user_id": USER}, idempotency_key="ticket-1", scope="training")
    with pytest.raises(InputError, match="already used for a request of scope training, not all"):
        intake.submit(rt, {"user_id": USER}, idempotency_key="ticket-1")
    intake.submit(rt, {"user_id": "7"}, idempotency_key="ticket-2")
    with pytest.raises(InputError, match="already used for a request of scope all, not training"):
        intake.submit(rt, {"user_id": "7"}, idempotency_key="ticket-2", scope="training")
    again = intake.submit(rt, {"user_id": USER}, idempotency_key="ticket-1", scope="training")
    assert (again.request_id, again.duplicate) == (first.request_id, True)
    assert recorded(rt) == (2, 4)


# --- nothing found -----------------------------------------------------------------------------------


def test_nothing_found_leaves_skipped_systems_out(rt: Runtime, clickstream: Path) -> None:
    """A training request whose snapshot held nothing of the subject's is nothing found, its skipped system aside."""
    request_id = intake.submit(rt, {"user_id": "99"}, scope="training").request_id
    drain(rt)
    status = views.status(rt, request_id)
    assert (status["status"], status["nothing_found"]) == ("completed", True)
    assert {name: s["status"] for name, s in systems(rt, request_id).items()} == {
        "clickstream": "not_found", "app-db": "skipped"}


def test_a_skipped_system_beside_an_erased_one_is_not_nothing_found(make_runtime: MakeRuntime) -> None:
    """A training system erased something and another was skipped: not nothing found."""
    rt = make_runtime(stub("features", training=True) + stub("crm"))
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    drain(rt)
    assert views.status(rt, request_id)["nothing_found"] is False


# --- what never moves a skipped system ---------------------------------------------------------------


def test_the_reconciler_resends_a_lost_message_to_the_training_system_alone(make_runtime: MakeRuntime) -> None:
    """Messages lost after the start: the reconciler re-sends the pending system, never the skipped one."""
    rt = make_runtime(stub("features", training=True) + stub("crm"))
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    fanout.start(rt, request_id)
    assert isinstance(rt.dispatch, ListDispatch)
    rt.dispatch.sent.clear()  # the broker lost the erase message
    with rt.transaction() as session:
        request = session.get_one(Request, request_id)
        request.received_at -= timedelta(hours=1)
    assert reconcile.reconcile(rt)["resent"] == 1
    assert erase_messages(rt) == ["features"]
    drain(rt)
    assert {name: s["status"] for name, s in systems(rt, request_id).items()} == {
        "features": "erased", "crm": "skipped"}
    assert not any(reconcile.reconcile(rt).values()) and erase_messages(rt) == []
    assert rt.connector("crm").calls == 0  # type: ignore[attr-defined]


def test_retry_leaves_a_skipped_system_alone(make_runtime: MakeRuntime) -> None:
    """Retrying a failed training request re-runs its failed system; the skipped one stays as it was."""
    rt = make_runtime(stub("features", training=True, fail_permanently=True) + stub("crm"))
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    drain(rt)
    skipped = systems(rt, request_id)["crm"]
    assert views.status(rt, request_id)["status"] == "failed"
    assert fanout.retry(rt, request_id) == ["features"]
    assert erase_messages(rt) == ["features"]
    assert systems(rt, request_id)["crm"] == skipped


def test_a_skipped_system_cannot_be_exempted(rt: Runtime) -> None:
    """`erasure exempt` refuses a skipped system: it is not erased, so nothing is left to exempt."""
    request_id = intake.submit(rt, {"user_id": USER}, scope="training").request_id
    with pytest.raises(RefusedError, match="is skipped"):
        exemptions.exempt(rt, request_id, "app-db", "Art. 17(3)(b): a legal obligation")
    assert systems(rt, request_id)["app-db"]["status"] == "skipped"


def test_replay_after_a_restore_never_erases_a_skipped_system(rt: Runtime, app_db: Path) -> None:
    """Replaying completed requests on the sql system leaves out the objection that skipped it."""
    before = app_db.read_bytes()
    intake.submit(rt, {"user_id": USER}, scope="training")
    drain(rt)
    done = suppression.replay(rt, "app-db")
    assert (done.requests, done.items_erased) == (0, 0)
    assert app_db.read_bytes() == before
