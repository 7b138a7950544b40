"""A flag's life: open, acknowledged, then retrained or waived for good. Each change carries a
reason, lands in the flag's history and the logs, and a change that is not allowed is refused
whole, from the library and from `erasure models ack|retrained|waive`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from tests.helpers import NO_BATCH_WAIT, OCT, MakeRuntime, erased, snapshot_system, write_snapshot
from worker.engine import flags, lineage
from worker.engine.flags import F
from worker.errors import InputError, RefusedError
from worker.runtime import Runtime
from worker.store.engine import MIGRATIONS, create_store_engine, migrate
from worker.store.models import Base, FlagEvent, Lineage, ModelFlag
from worker.surfaces import views
from worker.surfaces.cli import main


@pytest.fixture
def clicks(tmp_path: Path) -> Path:
    """One snapshot holding users 1 and 2, another holding user 3."""
    root = tmp_path / "clickstream"
    write_snapshot(root / "2026-10-01" / "part-0.parquet", [1, 2])
    write_snapshot(root / "2026-11-01" / "part-0.parquet", [3])
    return root


@pytest.fixture
def flagged(make_runtime: MakeRuntime, clicks: Path) -> tuple[Runtime, list[str]]:
    """A runtime where recsys 1 (trained on 2026-10-01) is flagged by two requests; ranker 1 is not flagged."""
    rt = make_runtime(snapshot_system(clicks), worker=NO_BATCH_WAIT)
    lineage.add(rt, "recsys", "1", [OCT])
    lineage.add(rt, "ranker", "1", ["clickstream:2026-11-01"])
    return rt, [erased(rt, "1"), erased(rt, "2")]


def states(rt: Runtime, model: str = "recsys", version: str = "1") -> dict[str, str]:
    """Each flag's state of one model version, by request id."""
    found = next(m for m in views.models(rt, flagged_only=False) if (m["model"], m["version"]) == (model, version))
    return {f["request_id"]: f["state"] for f in found["flags"]}


def history(rt: Runtime) -> list[tuple[str, str, str, str]]:
    """Every flag event as (request id, from, to, reason), oldest first."""
    with rt.transaction() as session:
        rows = session.execute(select(ModelFlag.request_id, FlagEvent.from_state, FlagEvent.to_state, FlagEvent.reason)
                               .join(ModelFlag, FlagEvent.flag_id == ModelFlag.id).order_by(FlagEvent.id)).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_new_flag_is_open_with_no_reason(flagged: tuple[Runtime, list[str]]) -> None:
    """A flag starts open, with no reason and no change time, and no history."""
    rt, _ = flagged
    flag = views.models(rt, flagged_only=True)[0]["flags"][0]
    assert (flag["state"], flag["reason"], flag["changed_at"], flag["history"]) == ("open", None, None, [])
    assert flag["flagged_at"].endswith("Z")


def test_ack_then_retrained_records_each_step(make_runtime: MakeRuntime, clicks: Path, store_url: str) -> None:
    """Every open flag of the version is acknowledged, then retrained; the flag shows the last reason and
    the history keeps both steps, on each store engine."""
    rt = make_runtime(snapshot_system(clicks), store_url=store_url, worker=NO_BATCH_WAIT)
    lineage.add(rt, "recsys", "1", [OCT])
    ids = [erased(rt, "1"), erased(rt, "2")]

    assert flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, "ticket ML-12") == [(i, "open") for i in ids]
    assert flags.change(rt, "recsys", "1", F.RETRAINED, " recsys 2 replaces it ") == [(i, "acknowledged") for i in ids]
    flag = views.models(rt, flagged_only=True)[0]["flags"][0]
    assert (flag["state"], flag["reason"]) == ("retrained", "recsys 2 replaces it")
    assert flag["changed_at"].endswith("Z")
    assert [(h["from"], h["to"], h["reason"]) for h in flag["history"]] == [
        ("open", "acknowledged", "ticket ML-12"), ("acknowledged", "retrained", "recsys 2 replaces it")]
    assert [e[:3] for e in history(rt)] == [(ids[0], "open", "acknowledged"), (ids[1], "open", "acknowledged"),
                                           (ids[0], "acknowledged", "retrained"), (ids[1], "acknowledged", "retrained")]


@pytest.mark.parametrize("first", [[], [F.ACKNOWLEDGED]], ids=["from-open", "from-acknowledged"])
def test_waive_is_allowed_from_open_and_acknowledged(flagged: tuple[Runtime, list[str]], first: list[F]) -> None:
    """A flag that is open or acknowledged can be waived."""
    rt, ids = flagged
    for state in first:
        flags.change(rt, "recsys", "1", state, "seen")
    flags.change(rt, "recsys", "1", F.WAIVED, "the subject's rows were 0.001% of training")
    assert states(rt) == {ids[0]: "waived", ids[1]: "waived"}


@pytest.mark.parametrize(("steps", "to", "message"), [
    ([], F.RETRAINED, "acknowledge it first"),                          # open -> retrained
    ([F.ACKNOWLEDGED, F.RETRAINED], F.WAIVED, "final"),                 # retrained is final
    ([F.WAIVED], F.ACKNOWLEDGED, "final"),                              # waived is final
    ([F.ACKNOWLEDGED, F.RETRAINED], F.OPEN, "final"),                   # retrained -> open
    ([F.ACKNOWLEDGED], F.OPEN, "cannot become open"),                   # acknowledged -> open
    ([F.ACKNOWLEDGED], F.ACKNOWLEDGED, "already acknowledged"),         # nothing to do
], ids=["open-retrained", "retrained-waived", "waived-ack", "retrained-open", "ack-open", "ack-ack"])
def test_a_move_the_lifecycle_does_not_allow_is_refused_and_changes_nothing(
    flagged: tuple[Runtime, list[str]], steps: list[F], to: F, message: str,
) -> None:
    """A refused move raises RefusedError naming why, and leaves states and history as they were."""
    rt, _ = flagged
    for step in steps:
        flags.change(rt, "recsys", "1", step, "step")
    before = (states(rt), history(rt))
    with pytest.raises(RefusedError, match=message):
        flags.change(rt, "recsys", "1", to, "try")
    assert (states(rt), history(rt)) == before


def test_one_flag_that_cannot_move_refuses_the_whole_command(flagged: tuple[Runtime, list[str]]) -> None:
    """With one flag acknowledged and one open, `retrained` for the version changes neither."""
    rt, ids = flagged
    flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, "first one", request_id=ids[0])
    with pytest.raises(RefusedError, match=ids[1]):
        flags.change(rt, "recsys", "1", F.RETRAINED, "done")
    assert states(rt) == {ids[0]: "acknowledged", ids[1]: "open"}


def test_request_changes_only_that_requests_flag(flagged: tuple[Runtime, list[str]]) -> None:
    """With a request id, only that request's flag moves; a later version-wide ack moves only what is still open."""
    rt, ids = flagged
    assert flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, "one", request_id=ids[1]) == [(ids[1], "open")]
    assert states(rt) == {ids[0]: "open", ids[1]: "acknowledged"}
    assert flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, "rest") == [(ids[0], "open")]


@pytest.mark.parametrize(("model", "version", "request_id", "error"), [
    ("nosuch", "1", None, InputError),          # no such model
    ("recsys", "9", None, InputError),          # no such version
    ("ranker", "1", None, RefusedError),        # a known version with no flag
    ("recsys", "1", "no-such-request", InputError),
], ids=["model", "version", "unflagged", "request"])
def test_an_unknown_target_is_refused(flagged: tuple[Runtime, list[str]], model: str, version: str,
                                      request_id: str | None, error: type[Exception]) -> None:
    """An unknown model, version or request, or a version without flags, is refused and nothing changes."""
    rt, ids = flagged
    with pytest.raises(error):
        flags.change(rt, model, version, F.ACKNOWLEDGED, "why", request_id=request_id)
    assert history(rt) == []


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501, "two\nlines", "nul\x00", "tab\there", "esc\x1b[31m",
                                    "bidi\u202eevil", "line\u2028sep"],
                         ids=["empty", "blank", "too-long", "newline", "nul", "tab", "escape", "bidi", "line-sep"])
def test_a_bad_reason_is_refused_and_changes_nothing(flagged: tuple[Runtime, list[str]], reason: str) -> None:
    """An empty, over-long or multi-line reason, or one with control characters, is an InputError; nothing moves."""
    rt, ids = flagged
    with pytest.raises(InputError, match="--reason"):
        flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, reason)
    assert states(rt) == {ids[0]: "open", ids[1]: "open"}


def test_a_reason_of_500_characters_and_any_script_is_kept(flagged: tuple[Runtime, list[str]]) -> None:
    """The longest allowed reason, in any script, is stored as given."""
    rt, _ = flagged
    reason = ("Löschung geprüft — 已确认 " * 40)[:500]
    flags.change(rt, "recsys", "1", F.WAIVED, reason)
    assert {e[3] for e in history(rt)} == {reason.strip()}


def test_the_status_shows_each_flags_state(flagged: tuple[Runtime, list[str]]) -> None:
    """A request's status carries its flags with state, reason and change time; flagged_models keeps its shape."""
    rt, ids = flagged
    flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, "on it", request_id=ids[0])
    status = views.status(rt, ids[0])
    assert status["flagged_models"] == [{"model": "recsys", "version": "1", "snapshots": [OCT]}]
    [flag] = status["flags"]
    assert set(flag) == {"model", "version", "snapshots", "files", "state", "reason", "flagged_at", "changed_at"}
    assert (flag["state"], flag["reason"]) == ("acknowledged", "on it")
    states = {s["request_id"]: s["flags"][0]["state"] for s in views.listing(rt)}  # same second: any order
    assert states == {ids[0]: "acknowledged", ids[1]: "open"}


def test_each_change_is_logged_with_model_version_and_request(
    flagged: tuple[Runtime, list[str]], json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """A change logs flag.<state> per flag with model, version, request and previous state; not the reason."""
    rt, ids = flagged
    json_logs()
    flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, "secret-ish reason")
    flags.change(rt, "recsys", "1", F.WAIVED, "another")
    events = [e for e in json_logs() if e["event"].startswith("flag.")]
    assert [(e["event"], e["request_id"], e["previous"]) for e in events] == [
        ("flag.acknowledged", ids[0], "open"), ("flag.acknowledged", ids[1], "open"),
        ("flag.waived", ids[0], "acknowledged"), ("flag.waived", ids[1], "acknowledged")]
    assert {(e["model"], e["version"]) for e in events} == {("recsys", "1")}
    assert set(events[0]) == {"event", "model", "version", "request_id", "previous", "level", "logger", "timestamp"}


def cli(capsys: pytest.CaptureFixture[str], rt: Runtime, *argv: str) -> tuple[int, str, str]:
    """Run `erasure` in-process on the runtime's config; returns exit code, stdout and stderr."""
    code = main([*argv, "--config", str(rt.config.path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_ack_prints_each_flag_moved(flagged: tuple[Runtime, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    """`models ack MODEL VERSION --reason` exits 0 with one line per flag, and `models --json` shows the state."""
    rt, ids = flagged
    code, out, _ = cli(capsys, rt, "models", "ack", "recsys", "1", "--reason", "ticket ML-12")
    assert code == 0
    assert out.splitlines() == [f"recsys 1  {i}  open -> acknowledged" for i in ids]
    listed = json.loads(cli(capsys, rt, "models", "--flagged", "--json")[1])
    assert [(m["model"], [f["state"] for f in m["flags"]]) for m in listed] == [("recsys", ["acknowledged"] * 2)]
    assert listed[0]["flags"][0]["reason"] == "ticket ML-12"


def test_cli_takes_config_and_request_anywhere(flagged: tuple[Runtime, list[str]],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--config given before the subcommand is kept, and --request moves only that request's flag."""
    rt, ids = flagged
    code = main(["models", "--config", str(rt.config.path), "waive", "recsys", "1", "--request", ids[0],
                 "--reason", "not in the training split"])
    assert code == 0 and capsys.readouterr().out.split() == ["recsys", "1", ids[0], "open", "->", "waived"]
    assert states(rt) == {ids[0]: "waived", ids[1]: "open"}


@pytest.mark.parametrize("argv", [
    ["models", "retrained", "recsys", "1", "--reason", "skip ahead"],      # open -> retrained
    ["models", "ack", "nosuch", "1", "--reason", "x"],                     # unknown model
    ["models", "ack", "ranker", "1", "--reason", "x"],                     # no flag
    ["models", "ack", "recsys", "1", "--reason", ""],                      # empty reason
    ["models", "ack", "recsys", "1", "--reason", "a\x07b"],                # control character
    ["models", "ack", "recsys", "1", "--reason", "y" * 501],               # too long
    ["models", "ack", "recsys", "1", "--reason", "x", "--request", "nope"],  # request without a flag
], ids=["transition", "model", "unflagged", "empty", "control", "long", "request"])
def test_cli_refusals_are_one_line_exit_2(flagged: tuple[Runtime, list[str]], capsys: pytest.CaptureFixture[str],
                                          argv: list[str]) -> None:
    """Each refused change exits 2 with one line on stderr, prints nothing and changes nothing."""
    rt, ids = flagged
    code, out, err = cli(capsys, rt, *argv)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and err.startswith("erasure: ") and "Traceback" not in err
    assert states(rt) == {ids[0]: "open", ids[1]: "open"} and history(rt) == []


@pytest.mark.parametrize("argv", [["models", "ack", "recsys", "1"], ["models", "bogus"], ["models", "ack", "recsys"]],
                         ids=["no-reason", "unknown-action", "no-version"])
def test_cli_usage_errors_are_one_line_exit_2(flagged: tuple[Runtime, list[str]], capsys: pytest.CaptureFixture[str],
                                              argv: list[str]) -> None:
    """A missing --reason, an unknown action or a missing argument is a one-line usage error, exit 2."""
    rt, _ = flagged
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--config", str(rt.config.path)])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_table_shows_state_and_reason(flagged: tuple[Runtime, list[str]],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`erasure models` shows one row per flag with its state and reason, and a row for an unflagged version."""
    rt, ids = flagged
    flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, "ticket ML-12", request_id=ids[0])
    code, out, _ = cli(capsys, rt, "models")
    rows = out.splitlines()
    assert code == 0 and rows[0].split() == ["MODEL", "VERSION", "REQUEST", "STATE", "SNAPSHOTS", "CHANGED", "REASON"]
    assert rows[1].split()[:4] == ["ranker", "1", "-", "-"]
    by_request = {row.split()[2]: row for row in rows[2:]}
    assert by_request[ids[0]].split()[3] == "acknowledged" and by_request[ids[0]].endswith("ticket ML-12")
    assert by_request[ids[1]].split()[3] == "open"
    assert rows[0].index("STATE") == by_request[ids[0]].index("acknowledged")


def test_migration_0003_keeps_existing_lineage_and_flags(store_url: str) -> None:
    """A store at 0002 with lineage and a flag upgrades to head: trained_at = recorded_at, the state kept,
    no reason yet, no history, and the schema matches the models exactly."""
    engine = create_store_engine(store_url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    recorded, flagged_at = datetime(2026, 10, 2, 8, 0, 5), datetime(2026, 11, 3, 9, 0, 0)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        conn.execute(sa.table("requests", *map(sa.column, ["id", "subject_ref", "status", "received_at", "deadline"]),
                              sa.column("identifiers", sa.JSON)).insert(),
                     [{"id": "r-1", "subject_ref": "ref", "identifiers": {}, "status": "completed",
                       "received_at": flagged_at, "deadline": flagged_at}])
        conn.execute(sa.table("lineage", *map(sa.column, ["model", "version", "snapshot", "recorded_at"])).insert(),
                     [{"model": "recsys", "version": "1", "snapshot": OCT, "recorded_at": recorded}])
        conn.execute(sa.table("model_flags", *map(sa.column, ["model", "version", "request_id", "state", "flagged_at"]),
                              sa.column("snapshots", sa.JSON)).insert(),
                     [{"model": "recsys", "version": "1", "request_id": "r-1", "snapshots": [OCT],
                       "state": "acknowledged", "flagged_at": flagged_at}])
    try:
        migrate(engine)
        with engine.connect() as conn:
            trained = conn.scalar(select(Lineage.trained_at))
            flag = conn.execute(select(ModelFlag.state, ModelFlag.reason, ModelFlag.changed_at)).one()
            events = conn.scalar(select(sa.func.count()).select_from(FlagEvent))
            drift = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert trained == recorded.replace(tzinfo=UTC)
        assert tuple(flag) == ("acknowledged", None, None) and events == 0
        assert drift == []
    finally:
        engine.dispose()
