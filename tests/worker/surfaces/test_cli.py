"""The `erasure` command as support tooling and a DPO use it: exit codes, one-line
errors, the contract's JSON shapes and aligned tables for people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import MakeRuntime, drain, snapshot_system, stub, system_table, write_config
from worker.engine import intake
from worker.surfaces.cli import main, table

STATUS_KEYS = {"request_id", "status", "received_at", "deadline", "completed_at", "subject_ref",
               "systems", "flagged_models"}
SYSTEM_KEYS = {"system", "kind", "status", "attempts", "items_erased", "error", "reason", "finished_at"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config with two stub systems, one per identifier type."""
    return write_config(tmp_path, stub("crm") + stub("mail", uses=["email"]))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one command in-process; returns the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_json_is_the_contract_object(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`submit --json` prints request_id, status received and duplicate false."""
    code, out, _ = run(capsys, "submit", "--config", str(config), "--subject", "user_id=42", "--json")
    answer = json.loads(out)
    assert code == 0
    assert set(answer) == {"request_id", "status", "duplicate"}
    assert (answer["status"], answer["duplicate"]) == ("received", False)


def test_status_json_has_the_contract_shape(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`status --json` carries every field the contract names, for the request and each system."""
    _, out, _ = run(capsys, "submit", "--config", str(config), "--subject", "email=zed@example.com", "--json")
    request_id = json.loads(out)["request_id"]
    code, out, _ = run(capsys, "status", request_id, "--config", str(config), "--json")
    status = json.loads(out)
    assert code == 0
    assert STATUS_KEYS <= set(status)
    assert [s["system"] for s in status["systems"]] == ["mail"]
    assert set(status["systems"][0]) == SYSTEM_KEYS
    assert status["received_at"].endswith("Z") and status["deadline"] > status["received_at"]
    assert "zed" not in status["subject_ref"]


def test_status_for_people_is_a_table(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json, status shows a header line and one aligned row per system."""
    _, out, _ = run(capsys, "submit", "--config", str(config), "--subject", "user_id=42",
                    "--subject", "email=a@b.c", "--json")
    request_id = json.loads(out)["request_id"]
    _, out, _ = run(capsys, "status", request_id, "--config", str(config))
    rows = out.splitlines()
    header = next(i for i, line in enumerate(rows) if line.startswith("SYSTEM"))
    assert rows[header + 1].startswith("crm ") and rows[header + 2].startswith("mail ")
    assert rows[header].index("STATUS") == rows[header + 1].index("pending")


def test_unknown_request_exits_3(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown request id is exit code 3 with one line naming it."""
    code, _, err = run(capsys, "status", "nope", "--config", str(config), "--json")
    assert code == 3
    assert err.strip().count("\n") == 0 and "nope" in err


@pytest.mark.parametrize("subject", ["user_id=", "user_id=4 2", "colour=red", "user_id", "email=a@b@c", "=42"])
def test_bad_subject_exits_2_and_records_nothing(config: Path, capsys: pytest.CaptureFixture[str],
                                                subject: str) -> None:
    """A refused subject is exit 2, one line on stderr, no traceback, nothing listed after."""
    code, out, err = run(capsys, "submit", "--config", str(config), "--subject", subject, "--json")
    assert code == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert run(capsys, "list", "--config", str(config), "--json")[1].strip() == "[]"


def test_usage_error_is_one_line_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing required option is exit 2 with a single line, not argparse's usage block."""
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--config", str(config)])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_bad_config_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config with an unknown kind stops the command with one line naming file, system and key."""
    path = write_config(tmp_path, system_table("x", "ftp"))
    code, _, err = run(capsys, "list", "--config", str(path))
    assert code == 2
    assert str(path) in err and "'x'" in err and "kind" in err and len(err.strip().splitlines()) == 1


def test_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No config file is exit 2 and says how to give one."""
    code, _, err = run(capsys, "list", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "--config" in err


def test_config_comes_from_the_environment(config: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --config, $ERASURE_CONFIG names the file."""
    monkeypatch.setenv("ERASURE_CONFIG", str(config))
    code, out, _ = run(capsys, "list", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_list_is_newest_first_and_filters_by_status(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`list --json` is newest first; --status keeps only that status; a bad status is exit 2."""
    ids = [json.loads(run(capsys, "submit", "--config", str(config), "--subject", f"user_id={n}", "--json")[1])
           ["request_id"] for n in (1, 2)]
    listed = json.loads(run(capsys, "list", "--config", str(config), "--json")[1])
    assert {r["request_id"] for r in listed} == set(ids)
    assert listed[0]["received_at"] >= listed[1]["received_at"]
    assert json.loads(run(capsys, "list", "--config", str(config), "--status", "completed", "--json")[1]) == []
    assert run(capsys, "list", "--config", str(config), "--status", "done")[0] == 2


def test_retry_of_a_request_that_has_not_failed_exits_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`retry` is refused for a request that is not failed, and is exit 3 for an unknown one."""
    request_id = json.loads(run(capsys, "submit", "--config", str(config), "--subject", "user_id=1", "--json")[1])[
        "request_id"]
    code, _, err = run(capsys, "retry", request_id, "--config", str(config))
    assert code == 2 and "not failed" in err and len(err.strip().splitlines()) == 1
    assert run(capsys, "retry", "missing", "--config", str(config))[0] == 3


def test_retry_of_a_failed_request_reruns_only_its_failed_systems(
    make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str],
) -> None:
    """`retry` names the failed systems and puts only those back to pending, with no attempts yet."""
    rt = make_runtime(stub("steady") + stub("broken", fail_permanently=True))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    capsys.readouterr()

    code, out, _ = run(capsys, "retry", request_id, "--config", str(rt.config.path))
    assert (code, out.strip()) == (0, f"{request_id}  retrying broken")
    status = json.loads(run(capsys, "status", request_id, "--config", str(rt.config.path), "--json")[1])
    found = {s["system"]: (s["status"], s["attempts"], s["error"]) for s in status["systems"]}
    assert status["status"] == "in_progress"
    assert found == {"steady": ("erased", 1, None), "broken": ("pending", 0, None)}


def test_lineage_refuses_a_non_snapshot_system(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lineage add` with a system that is not a snapshot system is exit 2; models stays empty."""
    code, _, err = run(capsys, "lineage", "add", "--config", str(config), "--model", "m", "--version", "1",
                       "--snapshot", "crm:2026-01-01")
    assert code == 2 and "crm" in err
    assert json.loads(run(capsys, "models", "--config", str(config), "--json")[1]) == []


def test_table_aligns_columns() -> None:
    """Each column starts at the same offset on every row; None shows as '-'."""
    lines = table(["A", "LONGER"], [["wide value", None], ["x", 3]]).splitlines()
    assert [line.index(c) for line, c in zip(lines, ["LONGER", "-", "3"], strict=True)] == [12, 12, 12]


@pytest.fixture
def snapshot_config(tmp_path: Path) -> Path:
    """A config with one snapshot system, `clickstream`, over an empty folder."""
    (tmp_path / "clickstream").mkdir()
    return write_config(tmp_path, snapshot_system(tmp_path / "clickstream"))


@pytest.mark.parametrize("when", ["2026-11-01T09:30:00", "yesterday", "2999-01-01T00:00:00Z"],
                         ids=["no-timezone", "not-iso", "future"])
def test_lineage_refuses_a_bad_training_time(snapshot_config: Path, capsys: pytest.CaptureFixture[str],
                                             when: str) -> None:
    """`lineage add --trained-at` without a timezone, not ISO 8601 or in the future: exit 2, one line, no lineage."""
    code, out, err = run(capsys, "lineage", "add", "--config", str(snapshot_config), "--model", "m", "--version", "1",
                         "--snapshot", "clickstream:2026-01-01", "--trained-at", when)
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1 and "--trained-at" in err
    assert json.loads(run(capsys, "models", "--config", str(snapshot_config), "--json")[1]) == []


def test_lineage_takes_a_training_time_and_models_still_lists(snapshot_config: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`lineage add --trained-at` with a Z time records the version; `models --flagged --json` is still a list."""
    code, out, _ = run(capsys, "lineage", "add", "--config", str(snapshot_config), "--model", "m", "--version", "1",
                       "--snapshot", "clickstream:2026-01-01", "--trained-at", "2026-01-02T03:04:05Z")
    assert code == 0 and "1 snapshot(s) recorded" in out
    listed = json.loads(run(capsys, "models", "--config", str(snapshot_config), "--json")[1])
    assert listed == [{"model": "m", "version": "1", "flags": []}]
    assert json.loads(run(capsys, "models", "--flagged", "--config", str(snapshot_config), "--json")[1]) == []
