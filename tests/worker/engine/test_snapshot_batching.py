"""Coalescing with the real snapshot connector over a local Parquet folder: requests waiting for the
system share one pass that rewrites each file once, and each request keeps its own counts,
evidence, snapshot hits and model flags."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from connectors.snapshot.connector import SnapshotConnector
from tests.helpers import NO_BATCH_WAIT, NOV, OCT, MakeRuntime, drain, snapshot_system, write_snapshot
from worker.engine import intake, lineage
from worker.runtime import Runtime
from worker.store.models import SnapshotHit
from worker.surfaces import views

DEC = "clickstream:2026-12-01"
P0, P1 = "2026-10-01/part-0.parquet", "2026-10-01/part-1.parquet"
N0, D0 = "2026-11-01/part-0.parquet", "2026-12-01/part-0.parquet"
EXPECTED: dict[str, dict[str, Any]] = {  # per user: rows erased, evidence files, hits as (snapshot, rows, files)
    "1": {"items": 2,
          "files": [(OCT, P0, 1), (NOV, N0, 1)],
          "hits": [(OCT, 1, [P0]), (NOV, 1, [N0])]},
    "2": {"items": 3,
          "files": [(OCT, P0, 2), (OCT, P1, 1)],
          "hits": [(OCT, 3, [P0, P1])]},
    "3": {"items": 1,
          "files": [(OCT, P0, 1)],
          "hits": [(OCT, 1, [P0])]},
}


@pytest.fixture
def clicks(tmp_path: Path) -> Path:
    """Users 1, 2 and 3 share 2026-10-01/part-0; 2 is also in part-1, 1 in 2026-11-01; 2026-12-01 holds none."""
    root = tmp_path / "clickstream"
    write_snapshot(root / P0, [1, 2, 3, 2, 10])
    write_snapshot(root / P1, [2, 4])
    write_snapshot(root / N0, [1, 5, 10])
    write_snapshot(root / D0, [6, 7])
    return root


class Watched:
    """The clickstream connector of a runtime, counting its passes and the files each rewrites."""

    def __init__(self, rt: Runtime) -> None:
        connector = rt.connector("clickstream")
        assert isinstance(connector, SnapshotConnector)
        self.passes: list[int] = []
        self.rewrites: Counter[str] = Counter()
        erase_many, location = connector.erase_many, connector.location
        replace = location.replace

        def counted_erase_many(subjects: Any, *journal: Any) -> Any:
            self.passes.append(len(subjects))
            return erase_many(subjects, *journal)

        def counted_replace(rel: str, write: Any, *before_swap: Any) -> Any:
            self.rewrites[rel] += 1
            return replace(rel, write, *before_swap)

        connector.erase_many = counted_erase_many  # type: ignore[method-assign]
        location.replace = counted_replace  # type: ignore[method-assign]


def submitted(rt: Runtime, users: list[str]) -> dict[str, str]:
    """Submit one request per user id, all waiting before any is played; request id by user."""
    return {user: intake.submit(rt, {"user_id": user}).request_id for user in users}


def hits(rt: Runtime, request_id: str) -> list[tuple[str, int, list[str]]]:
    """The snapshot hits recorded for a request, as (snapshot, rows, files)."""
    with rt.transaction() as session:
        found = session.scalars(select(SnapshotHit).where(SnapshotHit.request_id == request_id)
                                .order_by(SnapshotHit.snapshot))
        return [(h.snapshot, h.rows, sorted(h.files)) for h in found]


def flagged(rt: Runtime) -> dict[tuple[str, str], list[tuple[str, list[str]]]]:
    """Each flagged model version's flags as (request id, snapshots)."""
    return {(m["model"], m["version"]): [(f["request_id"], f["snapshots"]) for f in m["flags"]]
            for m in views.models(rt, flagged_only=True)}


def with_lineage(rt: Runtime) -> Runtime:
    """recsys 1 trained on 2026-11-01, ranker 1 on 2026-10-01, old 1 on 2026-12-01."""
    lineage.add(rt, "recsys", "1", [NOV])
    lineage.add(rt, "ranker", "1", [OCT])
    lineage.add(rt, "old", "1", [DEC])
    return rt


@pytest.mark.parametrize("users", [["1", "2"], ["1", "2", "3"]], ids=["two", "three"])
def test_waiting_requests_share_one_pass_and_each_file_is_rewritten_once(
    make_runtime: MakeRuntime, clicks: Path, users: list[str],
) -> None:
    """Requests pending for the snapshot system are erased in one pass that rewrites each file holding
    any of them once; each request gets its own items, evidence, hits and flags."""
    rt = with_lineage(make_runtime(snapshot_system(clicks), worker=NO_BATCH_WAIT))
    watched = Watched(rt)
    ids = submitted(rt, users)

    drain(rt)

    assert watched.passes == [len(users)]
    assert watched.rewrites == {P0: 1, P1: 1, N0: 1}  # 2026-12-01 never rewritten
    for user, request_id in ids.items():
        want = EXPECTED[user]
        status = views.status(rt, request_id)
        assert status["status"] == "completed"
        assert [(s["status"], s["items_erased"], s["attempts"]) for s in status["systems"]] == [
            ("erased", want["items"], 1)]
        assert views.evidence(rt, request_id)["clickstream"] == {"items": want["items"], "files": [
            {"snapshot": s, "file": f, "rows_removed": n} for s, f, n in want["files"]]}
        assert hits(rt, request_id) == want["hits"]
    assert {version: sorted(found) for version, found in flagged(rt).items()} == {  # flagged in one go: any order
        ("ranker", "1"): sorted((ids[user], [OCT]) for user in users),
        ("recsys", "1"): [(ids["1"], [NOV])],  # only user 1 was in 2026-11-01
    }
    kept = {rel: pq.read_table(clicks / rel).column("user_id").to_pylist() for rel in (P0, P1, N0, D0)}
    gone = {int(user) for user in users}
    assert kept == {P0: [u for u in [1, 2, 3, 2, 10] if u not in gone], P1: [4], N0: [5, 10], D0: [6, 7]}


def test_a_subject_absent_from_every_snapshot_is_erased_with_nothing_in_the_same_pass(
    make_runtime: MakeRuntime, clicks: Path,
) -> None:
    """In a pass with a present and an absent subject, the absent one's request settles not_found
    with 0 items, no evidence files, no hits and no flag; the present one's as if alone."""
    rt = with_lineage(make_runtime(snapshot_system(clicks), worker=NO_BATCH_WAIT))
    watched = Watched(rt)
    ids = submitted(rt, ["2", "99"])

    drain(rt)

    assert watched.passes == [2]
    assert watched.rewrites == {P0: 1, P1: 1}
    absent = views.status(rt, ids["99"])
    assert absent["status"] == "completed"
    assert [(s["status"], s["items_erased"]) for s in absent["systems"]] == [("not_found", 0)]
    assert absent["flagged_models"] == []
    assert views.evidence(rt, ids["99"])["clickstream"] == {"items": 0, "files": []}
    assert hits(rt, ids["99"]) == []
    present = views.status(rt, ids["2"])
    assert [(s["status"], s["items_erased"]) for s in present["systems"]] == [("erased", 3)]
    assert hits(rt, ids["2"]) == EXPECTED["2"]["hits"]
    assert flagged(rt) == {("ranker", "1"): [(ids["2"], [OCT])]}
