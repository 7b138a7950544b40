"""`erasure guard export` and `erasure guard check` as a DPO and a training pipeline use them: the
exported file's shape and mode; a check that fails (exit 1, counts per type and file, never a value)
on a snapshot re-exported with an erased subject and passes on a clean one; `--fix` removing exactly
those rows, recording `guard.fixed` and flagging the model trained on that snapshot; a bad
SYSTEM:SNAPSHOT refused in one line (exit 2)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tests.helpers import ListDispatch, drain, snapshot_system, stub, system_table, write_config, write_snapshot
from worker.config import load
from worker.engine import audit, intake, lineage
from worker.runtime import Runtime
from worker.store.models import AuditEvent, ModelFlag
from worker.surfaces.cli import main

OCT, NOV = "2026-10-01", "2026-11-01"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one command in-process; returns the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def erase(config: Path, subject: dict[str, str]) -> str:
    """Submit one request and play it to the end, as a worker would."""
    rt = Runtime(load(config), dispatch=ListDispatch())
    try:
        request_id = intake.submit(rt, subject).request_id
        drain(rt)
        return request_id
    finally:
        rt.close()


def ids(path: Path) -> list[int]:
    """The user ids of a Parquet file, in row order."""
    return list(pq.read_table(path).column("user_id").to_pylist())


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """User 2 erased from the October clickstream snapshot; then November's re-exported from upstream,
    which still held user 2 (twice, beside 20 and 1), and a second file of November that never did."""
    root = tmp_path / "clickstream"
    write_snapshot(root / OCT / "part-0.parquet", [1, 2, 3])
    config = write_config(tmp_path, snapshot_system(root) + stub("mail", uses=["email"]))
    erase(config, {"user_id": "2", "email": "Two@X.org"})
    assert ids(root / OCT / "part-0.parquet") == [1, 3]
    write_snapshot(root / NOV / "part-0.parquet", [1, 2, 20, 2, 12])
    write_snapshot(root / NOV / "part-1.parquet", [5, 6])
    return {"config": config, "root": root}


def test_export_writes_digests_folds_and_key_id_mode_0600(world: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The file: format 1, the guard key's id, when, each type's sorted digests and fold; readable by its
    owner only, even over a file that was there; counts printed; no value in it."""
    out = tmp_path / "guard.json"
    out.write_text("old")
    out.chmod(0o644)
    code, printed, _ = run(capsys, "guard", "export", "--out", str(out), "--config", str(world["config"]))
    assert code == 0 and "email 1, user_id 1" in printed and str(out) in printed
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    document = json.loads(out.read_text())
    assert set(document) == {"format", "key_id", "created_at", "types", "folds"}
    assert document["format"] == 1 and len(document["key_id"]) == 8 and document["created_at"].endswith("Z")
    assert document["folds"] == {"email": ["lower"], "user_id": []}
    digests = [d for listed in document["types"].values() for d in listed]
    assert len(digests) == 2 and all(len(d) == 64 and int(d, 16) >= 0 for d in digests)
    assert "two@x.org" not in out.read_text().lower()


def test_check_fails_on_a_snapshot_holding_a_guarded_subject(world: dict[str, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 1, with the rows per type (and distinct values) and the file that holds them; the
    other file counted as checked; no value printed."""
    code, out, _ = run(capsys, "guard", "check", f"clickstream:{NOV}", "--json", "--config", str(world["config"]))
    found = json.loads(out)
    assert code == 1
    assert found == {"snapshot": f"clickstream:{NOV}", "clean": False, "files_checked": 2, "rows": 2,
                     "types": {"user_id": {"rows": 2, "values": 1}},
                     "files": [{"file": f"{NOV}/part-0.parquet", "rows": 2, "types": {"user_id": 2}}]}
    code, out, _ = run(capsys, "guard", "check", f"clickstream:{NOV}", "--config", str(world["config"]))
    assert code == 1 and "2 row(s) of guarded subjects in 1 of 2 file(s)" in out and "part-0.parquet" in out
    assert ids(world["root"] / NOV / "part-0.parquet") == [1, 2, 20, 2, 12]  # a check changes nothing


def test_check_passes_on_a_clean_snapshot(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The October snapshot, erased when the request ran: exit 0."""
    code, out, _ = run(capsys, "guard", "check", f"clickstream:{OCT}", "--json", "--config", str(world["config"]))
    assert code == 0
    assert json.loads(out) == {"snapshot": f"clickstream:{OCT}", "clean": True, "files_checked": 1, "rows": 0,
                               "types": {}, "files": []}


def test_fix_removes_the_rows_flags_the_model_and_audits(world: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`--fix`: user 2's rows go from November's file and nothing else does (20 and 12 stay; the other
    file and October's are not rewritten); the model trained on November is flagged for the request
    with the reason; `guard.fixed` is in the audit trail with counts only; exit 0, clean after."""
    config, root = str(world["config"]), world["root"]
    request_id = json.loads(run(capsys, "list", "--json", "--config", config)[1])[0]["request_id"]
    recorded = Runtime(load(world["config"]), dispatch=ListDispatch())
    try:  # recorded without the guard's screen: as if trained before user 2's rows came back to November
        lineage.add(recorded, "recsys", "7", [f"clickstream:{NOV}"])
    finally:
        recorded.close()
    untouched = {p: p.stat().st_mtime_ns for p in (root / NOV / "part-1.parquet", root / OCT / "part-0.parquet")}

    code, out, _ = run(capsys, "guard", "check", f"clickstream:{NOV}", "--fix", "--json", "--config", config)
    answer = json.loads(out)
    assert code == 0 and answer["clean"] is True and answer["rows"] == 2
    assert answer["fixed"] == {"rows_removed": 2, "files_rewritten": [f"{NOV}/part-0.parquet"],
                               "models_flagged": [{"model": "recsys", "version": "7"}], "rows_left": 0}
    assert ids(root / NOV / "part-0.parquet") == [1, 20, 12]
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched

    rt = Runtime(load(world["config"]), dispatch=ListDispatch())
    try:
        with rt.transaction() as session:
            flag = session.scalars(sa.select(ModelFlag)).one()
            event = session.scalars(sa.select(AuditEvent).where(AuditEvent.type == "guard.fixed")).one()
        assert (flag.model, flag.version, flag.request_id, flag.snapshots, flag.state, flag.reason) == (
            "recsys", "7", request_id, [f"clickstream:{NOV}"], "open", "trained after the subject's request")
        assert event.system == "clickstream" and event.request_id is None
        data = event.data if isinstance(event.data, dict) else json.loads(event.data)
        assert data == {"snapshot": f"clickstream:{NOV}", "rows_removed": 2, "rows_left": 0, "files_rewritten": 1,
                        "requests": 1, "models_flagged": 1, "types": {"user_id": 2}}
        assert audit.verify(rt.transaction).broken is None
    finally:
        rt.close()
    assert run(capsys, "guard", "check", f"clickstream:{NOV}", "--config", config)[0] == 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_stored_text_is_folded_as_its_type_says(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    """email folds lower: a stored MARY@X.ORG (in a nested JSON field, or a CSV column) is the guarded
    mary@x.org, found and removed; mary@x.org.uk and the others stay."""
    root, column = tmp_path / "events", ("meta.email" if fmt == "jsonl" else "email")
    (root / OCT).mkdir(parents=True)
    (root / OCT / f"e.{fmt}").write_text("" if fmt == "jsonl" else "email,n\n")
    config = write_config(tmp_path, system_table("events", "snapshot", location=str(root), format=fmt,
                                                 where={column: "email"}))
    erase(config, {"email": "Mary@X.org"})
    stored = ["MARY@X.ORG", "mary@x.org.uk", "b@x.org", "Mary@X.Org"]
    if fmt == "jsonl":
        text = "".join(json.dumps({"meta": {"email": e}, "n": i}) + "\n" for i, e in enumerate(stored))
    else:
        text = "email,n\n" + "".join(f"{e},{i}\n" for i, e in enumerate(stored))
    (root / NOV).mkdir()
    (root / NOV / f"e.{fmt}").write_text(text)

    code, out, _ = run(capsys, "guard", "check", f"events:{NOV}", "--json", "--config", str(config))
    assert code == 1 and json.loads(out)["types"] == {"email": {"rows": 2, "values": 1}}
    assert "mary" not in out.lower()
    code, out, _ = run(capsys, "guard", "check", f"events:{NOV}", "--fix", "--config", str(config))
    assert code == 0 and "clean now" in out
    left = (root / NOV / f"e.{fmt}").read_text()
    assert "MARY@X.ORG" not in left and "Mary@X.Org" not in left
    assert "mary@x.org.uk" in left and "b@x.org" in left


@pytest.mark.parametrize("snapshot", ["nosuch:2026-11-01", "clickstream", "clickstream:../x", "mail:2026-11-01",
                                      "clickstream:2027-01-01"])
def test_a_bad_snapshot_is_refused_in_one_line(world: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                               snapshot: str) -> None:
    """No such system, no folder, a path out of the location, a system that is no snapshot, a folder with
    no file: exit 2, one line on stderr."""
    code, out, err = run(capsys, "guard", "check", snapshot, "--config", str(world["config"]))
    assert code == 2 and out == "" and err.count("\n") == 1


def test_a_delta_system_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Delta table has versions, not snapshot folders: exit 2, saying so."""
    config = write_config(tmp_path, system_table("events", "snapshot", location=str(tmp_path / "t"), format="delta",
                                                 where={"user_id": "user_id"}))
    code, _, err = run(capsys, "guard", "check", "events:3", "--config", str(config))
    assert code == 2 and "Delta" in err and err.count("\n") == 1


def test_lineage_add_require_clean_refuses_a_guarded_snapshot(world: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`lineage add --require-clean` on November: exit 1, one line naming the snapshot and the count; no
    lineage. Without it: recorded, exit 0, the version flagged with the reason, a hint to fix."""
    config = str(world["config"])
    code, out, err = run(capsys, "lineage", "add", "--config", config, "--model", "recsys", "--version", "8",
                         "--snapshot", f"clickstream:{NOV}", "--require-clean")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and f"clickstream:{NOV} holds 2 row(s) of guarded subjects" in err
    assert json.loads(run(capsys, "models", "--config", config, "--json")[1]) == []

    code, out, _ = run(capsys, "lineage", "add", "--config", config, "--model", "recsys", "--version", "8",
                       "--snapshot", f"clickstream:{NOV}")
    assert code == 0 and f"flagged: clickstream:{NOV} holds 2 row(s)" in out
    flagged = json.loads(run(capsys, "models", "--config", config, "--flagged", "--json")[1])
    assert [(m["model"], m["version"]) for m in flagged] == [("recsys", "8")]
