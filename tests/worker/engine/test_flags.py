"""Model flags: a model version trained on a snapshot that held the subject's rows is flagged,
with the request, exactly the snapshots that caused it and their files, unless its training
started after the snapshot was rewritten; lineage input is checked first."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.helpers import (
    DEC,
    NO_BATCH_WAIT,
    NOV,
    OCT,
    MakeRuntime,
    drain,
    erased,
    snapshot_system,
    stub,
    write_snapshot,
)
from worker.engine import fanout, intake, lineage, passes
from worker.errors import InputError, PermanentError
from worker.runtime import Runtime
from worker.store.models import Lineage, ModelFlag
from worker.surfaces import views


@pytest.fixture
def clickstream(tmp_path: Path) -> Path:
    """Three snapshots; user 2 is in 2026-10-01 and 2026-12-01 only, user 99 in none."""
    root = tmp_path / "clickstream"
    write_snapshot(root / "2026-10-01" / "part-0.parquet", [1, 2, 3])
    write_snapshot(root / "2026-11-01" / "part-0.parquet", [1, 3])
    write_snapshot(root / "2026-12-01" / "part-0.parquet", [2, 4])
    return root


@pytest.fixture
def snapshot_runtime(make_runtime: MakeRuntime, clickstream: Path) -> Runtime:
    """A runtime with the clickstream snapshot system and a stub `crm` system."""
    return make_runtime(snapshot_system(clickstream) + stub("crm"), worker=NO_BATCH_WAIT)


def flags_of(rt: Runtime) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every flagged model version's flags, by (model, version)."""
    return {(m["model"], m["version"]): m["flags"] for m in views.models(rt, flagged_only=True)}


def test_only_models_trained_on_a_snapshot_holding_the_subject_are_flagged(
    make_runtime: MakeRuntime, clickstream: Path, store_url: str,
) -> None:
    """Versions trained on a snapshot with the subject's rows are flagged with the request and those snapshots."""
    rt = make_runtime(snapshot_system(clickstream), store_url=store_url, worker=NO_BATCH_WAIT)
    lineage.add(rt, "recsys", "1", [OCT])
    lineage.add(rt, "recsys", "2", [NOV])
    lineage.add(rt, "ranker", "3", [OCT, DEC])
    request_id = erased(rt, "2")

    flags = flags_of(rt)
    assert set(flags) == {("recsys", "1"), ("ranker", "3")}
    assert [(f["request_id"], f["snapshots"]) for f in flags[("recsys", "1")]] == [(request_id, [OCT])]
    assert [(f["request_id"], f["snapshots"]) for f in flags[("ranker", "3")]] == [(request_id, [OCT, DEC])]
    assert views.status(rt, request_id)["status"] == "completed"


def test_a_model_on_two_snapshots_lists_only_the_one_holding_the_subject(snapshot_runtime: Runtime) -> None:
    """A version trained on a snapshot with the subject and one without is flagged for the first only."""
    lineage.add(snapshot_runtime, "recsys", "7", [OCT, NOV])
    request_id = erased(snapshot_runtime, "2")
    flags = flags_of(snapshot_runtime)
    assert list(flags) == [("recsys", "7")]
    assert [(f["request_id"], f["snapshots"], f["state"]) for f in flags[("recsys", "7")]] == [
        (request_id, [OCT], "open")]


def test_a_subject_in_no_snapshot_flags_nothing(snapshot_runtime: Runtime) -> None:
    """A request whose subject no snapshot holds completes, the snapshot system not_found, no model flagged."""
    lineage.add(snapshot_runtime, "recsys", "1", [OCT, NOV, DEC])
    request_id = erased(snapshot_runtime, "99")
    status = views.status(snapshot_runtime, request_id)
    snapshot = next(s for s in status["systems"] if s["system"] == "clickstream")
    assert (status["status"], snapshot["status"]) == ("completed", "not_found")
    assert status["flagged_models"] == []
    assert views.models(snapshot_runtime, flagged_only=True) == []


def test_each_request_is_flagged_only_by_its_own_snapshots(snapshot_runtime: Runtime) -> None:
    """A later request whose subject is not in a model's snapshot does not inherit an earlier request's flag."""
    lineage.add(snapshot_runtime, "recsys", "1", [DEC])
    lineage.add(snapshot_runtime, "ranker", "1", [NOV])
    holder = erased(snapshot_runtime, "2")  # in 2026-10-01 and 2026-12-01
    other = erased(snapshot_runtime, "1")   # in 2026-10-01 and 2026-11-01
    flags = flags_of(snapshot_runtime)
    assert [(f["request_id"], f["snapshots"]) for f in flags[("recsys", "1")]] == [(holder, [DEC])]
    assert [(f["request_id"], f["snapshots"]) for f in flags[("ranker", "1")]] == [(other, [NOV])]


def test_models_lists_every_version_or_only_flagged_ones(snapshot_runtime: Runtime) -> None:
    """`models` lists each recorded version with its flags; flagged_only keeps those with a flag, in contract shape."""
    lineage.add(snapshot_runtime, "recsys", "1", [OCT])
    lineage.add(snapshot_runtime, "recsys", "2", [NOV])
    request_id = erased(snapshot_runtime, "2")

    everything = views.models(snapshot_runtime, flagged_only=False)
    assert [(m["model"], m["version"], len(m["flags"])) for m in everything] == [("recsys", "1", 1), ("recsys", "2", 0)]
    flagged = views.models(snapshot_runtime, flagged_only=True)
    assert [(m["model"], m["version"]) for m in flagged] == [("recsys", "1")]
    assert set(flagged[0]) == {"model", "version", "flags"}
    assert {"request_id": request_id, "snapshots": [OCT]}.items() <= flagged[0]["flags"][0].items()


def test_the_status_json_carries_the_flagged_models(snapshot_runtime: Runtime) -> None:
    """The request's status lists each flagged model version with the snapshots that caused it."""
    lineage.add(snapshot_runtime, "ranker", "3", [DEC, NOV])
    lineage.add(snapshot_runtime, "recsys", "1", [OCT])
    request_id = erased(snapshot_runtime, "2")
    assert views.status(snapshot_runtime, request_id)["flagged_models"] == [
        {"model": "ranker", "version": "3", "snapshots": [DEC]},
        {"model": "recsys", "version": "1", "snapshots": [OCT]},
    ]


def test_a_flag_is_raised_once_even_when_the_request_is_retried(snapshot_runtime: Runtime) -> None:
    """A request that failed, was flagged and then retried to completion keeps one flag per model version."""
    lineage.add(snapshot_runtime, "recsys", "1", [OCT])
    snapshot_runtime.connector("crm").erase = refuse  # type: ignore[method-assign, assignment]
    request_id = erased(snapshot_runtime, "2")
    assert views.status(snapshot_runtime, request_id)["status"] == "failed"
    del snapshot_runtime._connectors["crm"]  # a fresh, working stub on next use

    fanout.retry(snapshot_runtime, request_id)
    drain(snapshot_runtime)
    status = views.status(snapshot_runtime, request_id)
    assert status["status"] == "completed"
    assert status["flagged_models"] == [{"model": "recsys", "version": "1", "snapshots": [OCT]}]
    with snapshot_runtime.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ModelFlag)) == 1


def refuse(subject: object) -> None:
    """A connector's erase that fails for good."""
    from worker.errors import PermanentError

    raise PermanentError("crm is read-only")


@pytest.mark.parametrize(("model", "snapshots"), [
    ("recsys", ["clickstream2026-10-01"]),          # no ":"
    ("recsys", ["nosuch:2026-10-01"]),              # unknown system
    ("recsys", ["crm:2026-10-01"]),                 # a system that is not a snapshot system
    ("recsys", ["clickstream:.."]),                 # a folder that climbs out
    ("recsys", ["clickstream:../2026-10-01"]),      # a folder with a path in it
    ("", [OCT]),                                    # empty model
    ("recsys", [OCT, "clickstream:.."]),            # one good, one bad: all refused
    ("recsys", []),                                 # no snapshot at all
], ids=["no-colon", "unknown-system", "not-snapshot", "dotdot", "path", "empty-model", "mixed", "none"])
def test_bad_lineage_input_is_refused_and_records_nothing(
    snapshot_runtime: Runtime, model: str, snapshots: list[str],
) -> None:
    """Malformed lineage raises InputError and leaves no lineage row behind."""
    with pytest.raises(InputError):
        lineage.add(snapshot_runtime, model, "1", snapshots)
    assert views.models(snapshot_runtime, flagged_only=False) == []


def test_adding_the_same_lineage_twice_records_it_once(snapshot_runtime: Runtime) -> None:
    """A repeated `lineage add` reports nothing new and keeps one row per snapshot."""
    assert lineage.add(snapshot_runtime, "recsys", "1", [OCT, NOV]).new == 2
    assert lineage.add(snapshot_runtime, "recsys", "1", [NOV, OCT]).new == 0
    assert lineage.add(snapshot_runtime, "recsys", "1", [OCT, DEC]).new == 1
    with snapshot_runtime.transaction() as session:
        rows = sorted(session.scalars(select(Lineage.snapshot)))
    assert rows == [OCT, NOV, DEC]
    assert [(m["model"], m["version"]) for m in views.models(snapshot_runtime, flagged_only=False)] == [
        ("recsys", "1")]


def finished_at(rt: Runtime, request_id: str, system: str = "clickstream") -> datetime:
    """When one system of a request finished, as the status says."""
    status = views.status(rt, request_id)
    found = next(s["finished_at"] for s in status["systems"] if s["system"] == system)
    return datetime.fromisoformat(found)


@pytest.fixture
def sharded(tmp_path: Path) -> Path:
    """One snapshot in four shards; user 2 is in part-0 and part-2 only."""
    root = tmp_path / "sharded"
    for shard, users in enumerate([[1, 2], [3], [2, 4], [5]]):
        write_snapshot(root / "2026-10-01" / f"part-{shard}.parquet", users)
    write_snapshot(root / "2026-11-01" / "part-0.parquet", [2])
    return root


def test_a_flag_names_the_files_that_held_the_subject(make_runtime: MakeRuntime, sharded: Path) -> None:
    """Each flag lists, per snapshot, only the shards that held the subject, in models and in the status."""
    rt = make_runtime(snapshot_system(sharded), worker=NO_BATCH_WAIT)
    lineage.add(rt, "recsys", "1", [OCT, NOV])
    request_id = erased(rt, "2")
    expected = {OCT: ["2026-10-01/part-0.parquet", "2026-10-01/part-2.parquet"],
                NOV: ["2026-11-01/part-0.parquet"]}
    assert flags_of(rt)[("recsys", "1")][0]["files"] == expected
    status = views.status(rt, request_id)
    assert [(f["model"], f["files"]) for f in status["flags"]] == [("recsys", expected)]
    assert status["flagged_models"] == [{"model": "recsys", "version": "1", "snapshots": [OCT, NOV]}]


def test_a_flag_names_the_files_only_of_the_snapshots_that_caused_it(make_runtime: MakeRuntime, sharded: Path) -> None:
    """A version trained on one of two snapshots that held the subject gets the files of that one only."""
    rt = make_runtime(snapshot_system(sharded), worker=NO_BATCH_WAIT)
    lineage.add(rt, "recsys", "1", [NOV])
    erased(rt, "2")
    assert flags_of(rt)[("recsys", "1")][0]["files"] == {NOV: ["2026-11-01/part-0.parquet"]}


def test_lineage_added_after_settle_flags_at_once(snapshot_runtime: Runtime) -> None:
    """A version recorded after the request settled, trained before the rewrite, is flagged when it is added."""
    request_id = erased(snapshot_runtime, "2")
    assert flags_of(snapshot_runtime) == {}
    before = finished_at(snapshot_runtime, request_id) - timedelta(days=30)

    assert lineage.add(snapshot_runtime, "recsys", "1", [OCT, NOV], trained_at=before).new == 2
    flags = flags_of(snapshot_runtime)[("recsys", "1")]
    assert [(f["request_id"], f["snapshots"], f["state"]) for f in flags] == [(request_id, [OCT], "open")]
    assert views.status(snapshot_runtime, request_id)["flagged_models"] == [
        {"model": "recsys", "version": "1", "snapshots": [OCT]}]


def test_a_version_trained_after_the_rewrite_is_not_flagged(snapshot_runtime: Runtime) -> None:
    """Lineage added after settle, for a training that started after the snapshot was rewritten, flags nothing."""
    request_id = erased(snapshot_runtime, "2")
    after = finished_at(snapshot_runtime, request_id) + timedelta(seconds=1)
    lineage.add(snapshot_runtime, "recsys", "2", [OCT, DEC], trained_at=after)
    assert flags_of(snapshot_runtime) == {}
    assert views.status(snapshot_runtime, request_id)["flagged_models"] == []


def test_at_settle_a_version_trained_after_the_rewrite_is_not_flagged(snapshot_runtime: Runtime) -> None:
    """Settle applies the same rule: a training recorded as starting after the rewrite is not flagged."""
    soon = datetime.now().astimezone() + timedelta(seconds=50)  # allowed: at most a minute ahead
    lineage.add(snapshot_runtime, "recsys", "2", [OCT], trained_at=soon)
    lineage.add(snapshot_runtime, "recsys", "1", [OCT])
    request_id = erased(snapshot_runtime, "2")
    assert finished_at(snapshot_runtime, request_id) < soon
    assert list(flags_of(snapshot_runtime)) == [("recsys", "1")]


def test_lineage_added_while_the_request_is_at_work_is_flagged_at_settle(snapshot_runtime: Runtime) -> None:
    """Lineage added after the snapshot was rewritten but before the request settles flags at the settle."""
    request_id = intake.submit(snapshot_runtime, {"user_id": "2"}).request_id
    snapshot_runtime.dispatch.sent.clear()  # type: ignore[attr-defined]
    fanout.start(snapshot_runtime, request_id)
    passes.erase_system(snapshot_runtime, request_id, "clickstream")  # crm still pending
    assert views.status(snapshot_runtime, request_id)["status"] == "in_progress"
    lineage.add(snapshot_runtime, "recsys", "1", [OCT], trained_at=datetime.now().astimezone() - timedelta(days=1))
    assert flags_of(snapshot_runtime) == {}
    drain(snapshot_runtime)
    assert [f["request_id"] for f in flags_of(snapshot_runtime)[("recsys", "1")]] == [request_id]


def test_a_snapshot_that_was_not_rewritten_flags_even_a_later_training(snapshot_runtime: Runtime) -> None:
    """When the snapshot system failed, the subject is still there: a training after it is flagged all the same."""
    def fail(subjects: object, journal: object = None) -> None:
        raise PermanentError("clickstream: read-only")

    snapshot_runtime.connector("clickstream").erase_many = fail  # type: ignore[method-assign, assignment]
    request_id = erased(snapshot_runtime, "2")
    assert views.status(snapshot_runtime, request_id)["status"] == "failed"
    later = finished_at(snapshot_runtime, request_id) + timedelta(seconds=1)
    lineage.add(snapshot_runtime, "recsys", "1", [OCT], trained_at=later)
    assert [f["request_id"] for f in flags_of(snapshot_runtime)[("recsys", "1")]] == [request_id]


def test_a_new_snapshot_of_a_flagged_version_joins_its_flag(snapshot_runtime: Runtime) -> None:
    """More lineage for a version already flagged widens that flag instead of raising a second one."""
    lineage.add(snapshot_runtime, "recsys", "1", [OCT])
    request_id = erased(snapshot_runtime, "2")
    lineage.add(snapshot_runtime, "recsys", "1", [DEC], trained_at=datetime.now().astimezone() - timedelta(days=1))
    flags = flags_of(snapshot_runtime)[("recsys", "1")]
    assert [(f["request_id"], f["snapshots"]) for f in flags] == [(request_id, [OCT, DEC])]
    assert set(flags[0]["files"]) == {OCT, DEC}


@pytest.mark.parametrize("when", [
    lambda: datetime(2026, 1, 1, 9, 30),                          # no timezone
    lambda: datetime.now().astimezone() + timedelta(minutes=5),   # in the future (from when the test runs)
], ids=["naive", "future"])
def test_a_bad_training_time_is_refused_and_records_nothing(snapshot_runtime: Runtime,
                                                            when: Callable[[], datetime]) -> None:
    """A training time without a timezone, or more than a minute ahead, is refused; no lineage row is left."""
    trained_at = when()
    with pytest.raises(InputError, match="--trained-at"):
        lineage.add(snapshot_runtime, "recsys", "1", [OCT], trained_at=trained_at)
    assert views.models(snapshot_runtime, flagged_only=False) == []


@pytest.mark.parametrize("text", ["2026-11-01T09:30:00Z", "2026-11-01T11:30:00+02:00", "2026-11-01 09:30:00.999+00:00"])
def test_training_times_are_read_in_utc_to_the_second(snapshot_runtime: Runtime, text: str) -> None:
    """ISO 8601 with Z or an offset is stored as the same UTC second (rounded down, the safe side)."""
    lineage.add(snapshot_runtime, "recsys", "1", [OCT], trained_at=lineage.parse_time(text))
    with snapshot_runtime.transaction() as session:
        stored = session.scalar(select(Lineage.trained_at))
    assert stored == datetime.fromisoformat("2026-11-01T09:30:00+00:00")
