"""`erasure check` and `erasure worker --check` as an operator runs them, over a real SQLite database and
snapshot folder: one line per system and resolver, `ok` or what fails, notes beneath; --json in its
shape; exit 0 when all pass, 1 when one fails, 2 for a bad config or option; and a worker told to
check first does not start, touching nothing, when a system fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import resolver, system_table, write_config, write_snapshot
from worker.surfaces.cli import main

TABLES = [{"name": "users", "where": {"id": "user_id"}, "action": "delete"}]


@pytest.fixture
def shop(tmp_path: Path) -> str:
    """A SQLite database with a users table; its URL."""
    url = f"sqlite:///{tmp_path}/shop.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    engine.dispose()
    return url


def config(tmp_path: Path, shop: str, tables: list[dict[str, object]] = TABLES, query: str = "") -> Path:
    """A config of the shop's database, a snapshot folder of Parquet files, and a resolver."""
    write_snapshot(tmp_path / "clicks" / "2026-10-01" / "part-0.parquet", [1, 2])
    return write_config(tmp_path, resolver("shop", "email", "user_id", query or "SELECT id FROM users WHERE "
                                                                                "email = :email")
                        + system_table("shop", "sql", url=shop, tables=tables)
                        + system_table("clicks", "snapshot", location=str(tmp_path / "clicks"),
                                       where={"user_id": "user_id"}))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """One `erasure` command in-process: exit code, stdout, stderr (a usage error exits as argparse does)."""
    try:
        code = main(list(argv))
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_passing_config_prints_ok_per_system_and_exits_0(tmp_path: Path, shop: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Each system and the resolver on a line of its own, `ok`, notes indented beneath; exit 0."""
    code, out, _ = run(capsys, "check", "--config", str(config(tmp_path, shop)))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["shop", "sql", "ok"]
    assert lines[1].split() == ["clicks", "snapshot", "ok"]
    assert lines[2] == "    note: 1 data file(s) looked at"
    assert lines[3].split() == ["resolver", "1", "(email", "->", "user_id)", "on", "shop", "resolver", "ok"]
    assert lines[-1] == "all pass: 2 system(s), 1 resolver(s)"


def test_a_failing_system_is_named_on_its_line_and_exits_1(tmp_path: Path, shop: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A missing table and a query with a typo fail on their lines; the passing system stays ok; exit 1."""
    tables = [*TABLES, {"name": "orders", "where": {"user_id": "user_id"}, "action": "delete"}]
    path = config(tmp_path, shop, tables, "SELECT id FROM users WHER lower(email) = :email")
    code, out, _ = run(capsys, "check", "--config", str(path))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split(maxsplit=2) == ["shop", "sql", "FAILED: table 'orders' does not exist"]
    assert lines[1].split() == ["clicks", "snapshot", "ok"]
    assert "resolver  FAILED: the query does not prepare: OperationalError:" in lines[3]
    assert lines[-1] == "2 of 3 FAILED: 2 system(s), 1 resolver(s)"


def test_json_has_every_system_and_resolver_with_problems_and_notes(tmp_path: Path, shop: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--json: ok, and per system its name, kind, ok, problems and notes; per resolver the same by label."""
    tables = [{"name": "users", "where": {"mail": "email"}, "action": "delete"}]
    code, out, _ = run(capsys, "check", "--json", "--config", str(config(tmp_path, shop, tables)))
    assert code == 1
    assert json.loads(out) == {
        "ok": False,
        "systems": [
            {"system": "shop", "kind": "sql", "ok": False, "problems": ["table 'users' has no column 'mail' (where)"],
             "notes": []},
            {"system": "clicks", "kind": "snapshot", "ok": True, "problems": [],
             "notes": ["1 data file(s) looked at"]}],
        "resolvers": [{"resolver": "resolver 1 (email -> user_id)", "system": "shop", "ok": True, "problems": [],
                       "notes": []}],
    }


def test_a_bad_config_or_timeout_exits_2(tmp_path: Path, shop: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A config that does not load, or a timeout of 0, is one line on stderr and exit 2."""
    bad = write_config(tmp_path, system_table("shop", "sql", url=shop, tables=[]), name="bad.toml")
    code, out, err = run(capsys, "check", "--config", str(bad))
    assert (code, out) == (2, "") and err.startswith("erasure: ") and "tables: lists no table" in err
    code, _, err = run(capsys, "check", "--timeout", "0", "--config", str(config(tmp_path, shop)))
    assert code == 2 and err == "erasure: --timeout: a number of seconds above 0\n"


def test_worker_check_refuses_to_start_on_a_failure(tmp_path: Path, shop: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`erasure worker --check` prints one line per problem on stderr and exits 1 before anything starts:
    the store is never even created."""
    tables = [*TABLES, {"name": "orders", "where": {"user_id": "user_id"}, "action": "delete"}]
    code, out, err = run(capsys, "worker", "--check", "--config", str(config(tmp_path, shop, tables)))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "erasure: check: shop: table 'orders' does not exist",
        "erasure: 1 system(s) or resolver(s) failed the check: the worker does not start (`erasure check` shows "
        "every finding)"]
    assert not (tmp_path / "state.db").exists()
