"""The guard check on snapshots whose rows hold several values: a row is a guarded subject's when any
`where` column holds a guarded value, and `--fix` removes exactly those rows, with ANDed columns and
with a path into a list of structs alike, never one that holds no guarded value."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers import MakeRuntime, drain, system_table
from worker.engine import guard_check, intake

OCT, NOV = "2026-10-01", "2026-11-01"


def test_anded_columns_lose_each_row_holding_a_guarded_value(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """Guarded: user 2 and two@x.org. Of (2, two@x.org), (2, other), (3, TWO@X.ORG) and (3, other),
    the first three go, counted per type; (3, other) stays."""
    root = tmp_path / "events"
    (root / OCT).mkdir(parents=True)
    (root / OCT / "e.jsonl").write_text("")
    rt = make_runtime(system_table("events", "snapshot", location=str(root), format="jsonl",
                                   where={"user_id": "user_id", "meta.email": "email"}))
    intake.submit(rt, {"user_id": "2", "email": "two@x.org"})
    drain(rt)
    rows = [(2, "two@x.org"), (2, "other@x.org"), (3, "TWO@X.ORG"), (3, "other@x.org")]
    (root / NOV).mkdir()
    (root / NOV / "e.jsonl").write_text("".join(json.dumps({"user_id": u, "meta": {"email": e}}) + "\n"
                                                for u, e in rows))

    found = guard_check.check(rt, f"events:{NOV}").to_json()
    assert (found["rows"], found["types"]) == (3, {"email": {"rows": 2, "values": 1},
                                                   "user_id": {"rows": 2, "values": 1}})
    fixed = guard_check.check(rt, f"events:{NOV}", fix=True)
    assert fixed.clean and fixed.fixed is not None and fixed.fixed["rows_removed"] == 3
    left = [json.loads(line) for line in (root / NOV / "e.jsonl").read_text().splitlines()]
    assert left == [{"user_id": 3, "meta": {"email": "other@x.org"}}]


def test_a_list_of_structs_loses_the_rows_with_a_guarded_element(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """`participants.user_id` over a list of structs: a row any of whose participants is guarded goes;
    [1, 3], an empty list and a null stay."""
    root = tmp_path / "chats"
    kind = pa.list_(pa.struct([("user_id", pa.int64())]))

    def write(path: Path, people: list[list[int] | None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cells = [None if p is None else [{"user_id": u} for u in p] for p in people]
        pq.write_table(pa.table({"participants": pa.array(cells, kind), "n": list(range(len(people)))}), path)

    write(root / OCT / "c.parquet", [[1]])
    rt = make_runtime(system_table("chats", "snapshot", location=str(root), format="parquet",
                                   where={"participants.user_id": "user_id"}))
    intake.submit(rt, {"user_id": "2"})
    drain(rt)
    write(root / NOV / "c.parquet", [[1, 2], [1, 3], [], None, [2], [20, 22]])

    found = guard_check.check(rt, f"chats:{NOV}")
    assert not found.clean and found.found.rows == 2
    assert guard_check.check(rt, f"chats:{NOV}", fix=True).clean
    assert pq.read_table(root / NOV / "c.parquet").column("n").to_pylist() == [1, 2, 3, 5]
