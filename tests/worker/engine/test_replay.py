"""Replay after a backup restore: a SQLite database and a Parquet snapshot restored from copies
taken before the erasures get them erased again from the suppression list, audited, idempotent,
never touching a system a request was exempt from or a subject erased before `--since`."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tests.helpers import MakeRuntime, drain, snapshot_system, system_table, write_snapshot
from worker.engine import audit, intake, suppression
from worker.errors import InputError
from worker.runtime import Runtime
from worker.store.models import Suppression
from worker.surfaces.cli import main

PART = "2026-10-01/part-0.parquet"


def sql_system(db: Path) -> str:
    """The `app` sql system: users deleted by id."""
    return system_table("app", "sql", url=f"sqlite:///{db}",
                        tables=[{"name": "users", "where": {"id": "user_id"}, "action": "delete"}])


def user_ids(db: Path) -> list[int]:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        found = sorted(conn.exec_driver_sql("SELECT id FROM users").scalars())
    engine.dispose()
    return found


def snapshot_ids(root: Path) -> list[int]:
    return sorted(pq.read_table(root / PART).column("user_id").to_pylist())


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """An application database of users 1..5, a snapshot holding users 1..5 and 2 twice, and the
    nightly backup of both taken before any erasure."""
    db, root = tmp_path / "app.db", tmp_path / "clickstream"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.exec_driver_sql("INSERT INTO users VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e')")
    engine.dispose()
    write_snapshot(root / PART, [1, 2, 3, 2, 4, 5])
    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.copy(db, backup / "app.db")
    shutil.copytree(root, backup / "clickstream")
    return {"db": db, "root": root, "backup": backup}


def restore(world: dict[str, Path]) -> None:
    """Put last night's copies back, as a restore from backup does."""
    shutil.copy(world["backup"] / "app.db", world["db"])
    shutil.rmtree(world["root"])
    shutil.copytree(world["backup"] / "clickstream", world["root"])


def erased(rt: Runtime, *users: str) -> list[str]:
    ids = [intake.submit(rt, {"user_id": user}).request_id for user in users]
    drain(rt)
    return ids


def replayed_events(rt: Runtime) -> list[tuple[str | None, str | None, int]]:
    with rt.transaction() as session:
        rows = session.execute(sa.text("SELECT request_id, system, data FROM audit_events "
                                       "WHERE type = 'request.replayed' ORDER BY seq")).all()
    return [(r, s, (json.loads(d) if isinstance(d, str) else d)["items"]) for r, s, d in rows]


def test_replay_erases_again_from_a_restored_database_and_snapshot(
        make_runtime: MakeRuntime, world: dict[str, Path]) -> None:
    """Users 2 and 3 erased, then the backup restored: both are back; replay on each system erases
    them again, others kept, each request's replay audited; a second replay erases nothing."""
    rt = make_runtime(sql_system(world["db"]) + snapshot_system(world["root"]))
    first, second = erased(rt, "2", "3")
    assert user_ids(world["db"]) == [1, 4, 5] and snapshot_ids(world["root"]) == [1, 4, 5]
    restore(world)
    assert user_ids(world["db"]) == [1, 2, 3, 4, 5]

    done = suppression.replay(rt, "app")
    assert (done.requests, done.items_erased, done.still_present) == (2, 2, 0)
    assert user_ids(world["db"]) == [1, 4, 5]
    assert snapshot_ids(world["root"]) == [1, 2, 2, 3, 4, 5]  # not replayed yet: one system at a time
    done = suppression.replay(rt, "clickstream")
    assert (done.requests, done.items_erased) == (2, 3)
    assert snapshot_ids(world["root"]) == [1, 4, 5]
    assert sorted(replayed_events(rt)) == sorted([(first, "app", 1), (second, "app", 1),
                                                  (first, "clickstream", 2), (second, "clickstream", 1)])

    again = suppression.replay(rt, "app")
    assert (again.requests, again.items_erased) == (2, 0)  # idempotent
    assert audit.verify(rt.transaction).broken is None


def test_replay_since_leaves_out_erasures_before_the_backup(make_runtime: MakeRuntime, world: dict[str, Path]) -> None:
    """`--since` the backup's date: a request completed before it is not replayed (the backup
    already lacks that subject, and the date says so)."""
    rt = make_runtime(sql_system(world["db"]))
    old, new = erased(rt, "2", "3")
    with rt.transaction() as session:
        session.get_one(Suppression, old).completed_at = datetime.now(UTC) - timedelta(days=10)
    restore(world)
    done = suppression.replay(rt, "app", since=datetime.now(UTC) - timedelta(days=1))
    assert (done.requests, done.items_erased) == (1, 1)
    assert user_ids(world["db"]) == [1, 2, 4, 5]
    assert [e[0] for e in replayed_events(rt)] == [new]


def test_replay_never_erases_where_the_request_was_exempt(make_runtime: MakeRuntime, world: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """A DPO exempted `app` for one request (Art. 17(3)): replay on `app` leaves that subject."""
    rt = make_runtime(sql_system(world["db"]) + snapshot_system(world["root"]))
    kept_id = intake.submit(rt, {"user_id": "2"}).request_id
    assert main(["exempt", kept_id, "--system", "app", "--reason", "tax law", "--config",
                 str(tmp_path / "erasure.toml")]) == 0
    drain(rt)
    erased(rt, "3")
    restore(world)
    done = suppression.replay(rt, "app")
    assert (done.requests, done.items_erased) == (1, 1)
    assert user_ids(world["db"]) == [1, 2, 4, 5]


def test_replay_command_prints_json_and_refuses_bad_input(
        make_runtime: MakeRuntime, world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`erasure replay --json`; an unknown system or a bad date is exit 2 with one line, nothing erased."""
    rt = make_runtime(sql_system(world["db"]))
    erased(rt, "2")
    restore(world)
    config = str(tmp_path / "erasure.toml")
    capsys.readouterr()  # what submitting logged (the key file made)
    for args, problem in ((["--system", "nope"], "no system named 'nope'"),
                          (["--system", "app", "--since", "2026-13-01"], "not a date")):
        assert main(["replay", *args, "--config", config]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and err.count("\n") == 0
    assert user_ids(world["db"]) == [1, 2, 3, 4, 5]
    assert main(["replay", "--system", "app", "--since", "2026-01-01", "--json", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out) == {"system": "app", "since": "2026-01-01", "requests": 1,
                                                   "items_erased": 1, "still_present": 0}
    assert user_ids(world["db"]) == [1, 3, 4, 5]


def test_replay_of_an_unknown_system_raises_input_error(make_runtime: MakeRuntime, world: dict[str, Path]) -> None:
    """The library call refuses the same way the command does."""
    rt = make_runtime(sql_system(world["db"]))
    with pytest.raises(InputError, match="no system named"):
        suppression.replay(rt, "billing")


def test_replay_never_widens_a_match(make_runtime: MakeRuntime, world: dict[str, Path]) -> None:
    """The suppression entry gives back the very values erased: replaying user 4 leaves users 42
    and 420 (the restored table holds all three), as the original erasure did."""
    rt = make_runtime(sql_system(world["db"]))
    engine = sa.create_engine(f"sqlite:///{world['db']}")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO users VALUES (42, 'x'), (420, 'y')")
    engine.dispose()
    shutil.copy(world["db"], world["backup"] / "app.db")
    erased(rt, "4")
    assert user_ids(world["db"]) == [1, 2, 3, 5, 42, 420]
    restore(world)
    done = suppression.replay(rt, "app")
    assert (done.requests, done.items_erased) == (1, 1)
    assert user_ids(world["db"]) == [1, 2, 3, 5, 42, 420]
