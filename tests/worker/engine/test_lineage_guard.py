"""Lineage sees the guard: a model version recorded as trained on a snapshot that holds a guarded
subject's rows is flagged at once, for that subject's request, with the reason; `require_clean`
refuses and records nothing; a clean snapshot changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.helpers import MakeRuntime, drain, system_table
from worker.engine import guard_check, intake, lineage
from worker.runtime import Runtime
from worker.store.models import Lineage, ModelFlag

OCT, NOV = "2026-10-01", "2026-11-01"


def write(root: Path, folder: str, users: list[int]) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "e.jsonl").write_text("".join(json.dumps({"user_id": u, "n": i}) + "\n"
                                                   for i, u in enumerate(users)))


@pytest.fixture
def guarded(make_runtime: MakeRuntime, tmp_path: Path) -> tuple[Runtime, Path, str]:
    """User 2 erased (so guarded) from the October snapshot; November, exported later, holds 2 again,
    beside 20 and 22."""
    root = tmp_path / "events"
    write(root, OCT, [1, 2])
    rt = make_runtime(system_table("events", "snapshot", location=str(root), format="jsonl",
                                   where={"user_id": "user_id"}))
    request_id = intake.submit(rt, {"user_id": "2"}).request_id
    drain(rt)
    write(root, NOV, [20, 2, 22, 2])
    return rt, root, request_id


def flags_of(rt: Runtime) -> list[tuple[str, str, str, list[str], str | None]]:
    with rt.transaction() as session:
        return [(f.model, f.version, f.request_id, f.snapshots, f.reason)
                for f in session.scalars(select(ModelFlag).order_by(ModelFlag.id))]


def test_a_version_trained_on_a_guarded_snapshot_is_flagged_at_once(guarded: tuple[Runtime, Path, str]) -> None:
    """Recorded on November, which holds user 2 twice: flagged for 2's request, with the reason."""
    rt, _, request_id = guarded
    added = lineage.add(rt, "recsys", "8", [f"events:{NOV}"], screen=guard_check.screen(rt))
    assert (added.new, added.guarded) == (1, {f"events:{NOV}": 2})
    assert flags_of(rt) == [("recsys", "8", request_id, [f"events:{NOV}"], lineage.TRAINED_AFTER)]


def test_only_the_version_recorded_is_flagged(guarded: tuple[Runtime, Path, str]) -> None:
    """An older version trained on November before the screen existed is not flagged by another's lineage."""
    rt, _, request_id = guarded
    lineage.add(rt, "ranker", "1", [f"events:{NOV}"])  # no screen: as before the guard
    lineage.add(rt, "recsys", "8", [f"events:{NOV}"], screen=guard_check.screen(rt))
    assert [(m, v) for m, v, *_ in flags_of(rt)] == [("recsys", "8")]


def test_require_clean_refuses_and_records_nothing(guarded: tuple[Runtime, Path, str]) -> None:
    """`require_clean` on a guarded snapshot: NotClean naming it and the count, no lineage, no flag."""
    rt, _, _ = guarded
    with pytest.raises(lineage.NotClean, match=rf"events:{NOV} holds 2 row\(s\) of guarded subjects"):
        lineage.add(rt, "recsys", "8", [f"events:{OCT}", f"events:{NOV}"], screen=guard_check.screen(rt),
                    require_clean=True)
    with rt.transaction() as session:
        assert session.scalars(select(Lineage)).all() == []
    assert flags_of(rt) == []


def test_a_clean_snapshot_is_recorded_and_flags_nothing(guarded: tuple[Runtime, Path, str]) -> None:
    """October was rewritten without user 2: recorded under require_clean, no flag for the guard's reason
    (the rule for settled requests still applies: training started within the second of the rewrite
    counts as before it)."""
    rt, _, _ = guarded
    added = lineage.add(rt, "recsys", "8", [f"events:{OCT}"], screen=guard_check.screen(rt), require_clean=True)
    assert (added.new, added.guarded) == (1, {})
    assert [f for f in flags_of(rt) if f[4] == lineage.TRAINED_AFTER] == []


def test_a_neighbour_whose_id_starts_the_same_is_not_guarded(guarded: tuple[Runtime, Path, str]) -> None:
    """A snapshot of users 20, 22 and 12 only is clean: 2 is guarded, not what starts or ends with it."""
    rt, root, _ = guarded
    write(root, "2026-12-01", [20, 22, 12])
    added = lineage.add(rt, "recsys", "9", ["events:2026-12-01"], screen=guard_check.screen(rt), require_clean=True)
    assert added.guarded == {}


def test_require_clean_without_a_guard_refuses(guarded: tuple[Runtime, Path, str]) -> None:
    """`require_clean` with no screen given cannot promise anything: refused."""
    rt, _, _ = guarded
    with pytest.raises(lineage.NotClean, match="no guard was given"):
        lineage.add(rt, "recsys", "8", [f"events:{OCT}"], require_clean=True)
