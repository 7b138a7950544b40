"""The guard's watch: a snapshot folder that appears (or gains a file) after a subject's request
settled is checked against the guard; the subject's rows that came back are erased, the models
trained on it flagged, `guard.caught` recorded and counted; a folder seen in the same state is not
read again; a look is bounded; beat schedules it on the snapshot queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sqlalchemy import select

from tests.helpers import MakeRuntime, drain, stub, system_table, write_config
from worker.config import load
from worker.engine import guard_watch, intake, lineage
from worker.queue.celery_app import configure
from worker.runtime import Runtime
from worker.store.models import AuditEvent, GuardLook, ModelFlag
from worker.surfaces.metrics import registry

OCT, NOV, DEC = "2026-10-01", "2026-11-01", "2026-12-01"


def write(root: Path, rel: str, users: list[int]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"user_id": u, "n": i}) + "\n" for i, u in enumerate(users)))


def users(root: Path, rel: str) -> list[int]:
    return [json.loads(line)["user_id"] for line in (root / rel).read_text().splitlines()]


@pytest.fixture
def world(make_runtime: MakeRuntime, tmp_path: Path) -> tuple[Runtime, Path, str]:
    """User 2 erased from October; the watch has looked once since (October clean, seen)."""
    root = tmp_path / "events"
    write(root, f"{OCT}/e.jsonl", [1, 2])
    rt = make_runtime(system_table("events", "snapshot", location=str(root), format="jsonl",
                                   where={"user_id": "user_id"}))
    request_id = intake.submit(rt, {"user_id": "2"}).request_id
    drain(rt)
    assert guard_watch.look(rt).checked == 1
    return rt, root, request_id


def caught_events(rt: Runtime) -> list[dict[str, object]]:
    with rt.transaction() as session:
        return [e.data if isinstance(e.data, dict) else json.loads(e.data) for e in
                session.scalars(select(AuditEvent).where(AuditEvent.type == "guard.caught"))]


def test_a_new_folder_holding_a_guarded_subject_is_caught(world: tuple[Runtime, Path, str]) -> None:
    """November appears with user 2 back (twice, beside 20 and 22): erased, counted, audited, and the
    model already recorded as trained on November flagged for 2's request."""
    rt, root, request_id = world
    write(root, f"{NOV}/e.jsonl", [20, 2, 22, 2])
    lineage.add(rt, "recsys", "8", [f"events:{NOV}"])
    looked = guard_watch.look(rt)
    assert (looked.checked, looked.caught) == (1, {f"events:{NOV}": 2})
    assert users(root, f"{NOV}/e.jsonl") == [20, 22]
    assert caught_events(rt) == [{"snapshot": f"events:{NOV}", "rows": 2, "rows_removed": 2, "requests": 1,
                                  "types": {"user_id": 2}}]
    with rt.transaction() as session:
        flag = session.scalars(select(ModelFlag)).one()
        assert (flag.version, flag.request_id, flag.reason) == ("8", request_id, lineage.TRAINED_AFTER)
        assert session.get(GuardLook, f"events:{NOV}").rows_caught == 2  # type: ignore[union-attr]
    metrics = generate_latest(registry(rt)).decode()
    assert 'erasure_guard_caught_rows_total{system="events"} 2.0' in metrics
    assert 'erasure_guard_catches_total{system="events"} 1.0' in metrics


def test_a_folder_seen_in_the_same_state_is_not_read_again(world: tuple[Runtime, Path, str]) -> None:
    """A second look with nothing new checks nothing; a file added to a seen folder has it checked again."""
    rt, root, _ = world
    write(root, f"{NOV}/a.jsonl", [1])
    assert guard_watch.look(rt).checked == 1
    assert guard_watch.look(rt).checked == 0
    write(root, f"{NOV}/late.jsonl", [3, 2])  # a late partition brings user 2 back
    looked = guard_watch.look(rt)
    assert (looked.checked, looked.caught) == (1, {f"events:{NOV}": 1})
    assert users(root, f"{NOV}/late.jsonl") == [3]


def test_a_clean_new_folder_is_recorded_without_a_catch(world: tuple[Runtime, Path, str]) -> None:
    """A folder of 20, 22 and 12 only: checked, seen, nothing erased, no guard.caught."""
    rt, root, _ = world
    write(root, f"{NOV}/e.jsonl", [20, 22, 12])
    looked = guard_watch.look(rt)
    assert (looked.checked, looked.caught) == (1, {})
    assert users(root, f"{NOV}/e.jsonl") == [20, 22, 12]
    assert caught_events(rt) == []


def test_a_look_is_bounded_and_the_rest_waits(world: tuple[Runtime, Path, str]) -> None:
    """Three new folders, a limit of two: two now, the third at the next look."""
    rt, root, _ = world
    for folder in (NOV, DEC, "2027-01-01"):
        write(root, f"{folder}/e.jsonl", [2])
    assert guard_watch.look(rt, limit=2).checked == 2
    looked = guard_watch.look(rt, limit=2)
    assert (looked.checked, sum(looked.caught.values())) == (1, 1)


def test_beat_schedules_the_watch_on_the_snapshot_queue(tmp_path: Path) -> None:
    """With a snapshot system: `guard-watch` every guard_watch_seconds on erasure.snapshot; with 0, or
    with no snapshot system, not at all."""
    snapshots = system_table("events", "snapshot", location=str(tmp_path), where={"user_id": "user_id"})
    every = load(write_config(tmp_path, snapshots, worker={"guard_watch_seconds": 120}))
    schedule = configure(every).conf.beat_schedule
    assert schedule["guard-watch"]["schedule"] == 120
    assert schedule["guard-watch"]["options"]["queue"] == "erasure.snapshot"
    off = load(write_config(tmp_path, snapshots, worker={"guard_watch_seconds": 0}, name="off.toml"))
    assert "guard-watch" not in configure(off).conf.beat_schedule
    no_snapshots = load(write_config(tmp_path, stub("fake"), name="stub.toml"))
    assert "guard-watch" not in configure(no_snapshots).conf.beat_schedule
