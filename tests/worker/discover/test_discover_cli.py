"""`erasure discover` on the command line: the draft on stdout or in a new file (never over one without
--force), exit 1 with one line naming a URL that cannot connect (without its password), exit 2 for bad
options; no password and no sampled value in the draft, the output or the logs."""

from __future__ import annotations

import argparse
import stat
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from worker.discover.draft import render
from worker.discover.identifiers import identifier_types
from worker.discover.run import discover, draft_url
from worker.surfaces import cli, discover_cli

Run = Callable[..., tuple[int, str, str]]
CANARIES = ["canary-7f3a@example.org", "Zebulon Quixote-Canary", "+44 7700 900123", "Canary Lane 99", "10.9.8.7",
            "other-canary@example.net"]


@pytest.fixture
def erasure(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """`erasure ARGS...` in-process, with `discover` wired into the parser as the lead wires it."""
    built = cli.build_parser

    def wired() -> argparse.ArgumentParser:
        parser = built()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # test-only wiring
        if "discover" not in sub.choices:
            common = cli.Parser(add_help=False)
            common.add_argument("--config")
            discover_cli.add_parser(sub, common)
        return parser

    monkeypatch.setattr(cli, "build_parser", wired)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run


@pytest.fixture
def canary_url(sqlite_url: str) -> str:
    """A SQLite database whose text columns hold recognisable values."""
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, phone TEXT)")
        conn.exec_driver_sql("CREATE TABLE visits (id INTEGER PRIMARY KEY, user_id INTEGER, street TEXT, last_ip TEXT)")
        conn.exec_driver_sql("CREATE TABLE audit (id INTEGER PRIMARY KEY, actor TEXT, note TEXT)")
        conn.exec_driver_sql("INSERT INTO users VALUES (1, ?, ?, ?)", tuple(CANARIES[:3]))
        conn.exec_driver_sql("INSERT INTO visits VALUES (1, 1, ?, ?)", tuple(CANARIES[3:5]))
        conn.exec_driver_sql("INSERT INTO audit VALUES (1, ?, ?)", (CANARIES[5], CANARIES[1]))
    engine.dispose()
    return sqlite_url


def test_the_draft_goes_to_stdout(erasure: Run, canary_url: str) -> None:
    """Without --out the draft is printed, exit 0, and it is TOML with the database's system."""
    code, out, _ = erasure("discover", "--url", canary_url)
    assert code == 0
    assert [t["name"] for t in tomllib.loads(out)["systems"][0]["tables"]] == ["users", "visits"]


def test_no_sampled_value_is_printed_written_or_logged(
        erasure: Run, canary_url: str, tmp_path: Path, json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    """Neither stdout, stderr, the draft file nor the INFO logs hold any sampled value."""
    discover([canary_url], [], identifier_types([], {}))
    logged = json_logs()
    assert any(event["event"] == "discover.sampled" for event in logged)
    code, out, err = erasure("discover", "--url", canary_url, "--out", str(tmp_path / "draft.toml"))
    _, printed, _ = erasure("discover", "--url", canary_url)
    texts = [repr(logged), out, err, printed, (tmp_path / "draft.toml").read_text()]
    assert code == 0
    assert "audit.actor" in texts[-1].split("# RISK LIST")[1]  # sampled: emails, none of them a user's
    assert [canary for canary in CANARIES for text in texts if canary.lower() in text.lower()] == []


def test_fides_values_never_reach_the_draft(fides_url: str) -> None:
    """No text value of Fides' sample (5 characters or more) appears in the draft, on any engine."""
    engine = sa.create_engine(fides_url)
    with engine.connect() as conn:
        metadata = sa.MetaData()
        metadata.reflect(conn)
        values = {value for table in metadata.tables.values() for row in conn.execute(sa.select(table))
                  for value in row if isinstance(value, str) and len(value) >= 5}
    engine.dispose()
    text = render(discover([fides_url], [], identifier_types([], {})))
    assert len(values) > 40
    assert [value for value in values if value in text] == []


def test_out_writes_a_new_file_and_never_replaces_one_without_force(erasure: Run, canary_url: str,
                                                                    tmp_path: Path) -> None:
    """--out creates the file (not writable by others); an existing one is refused (exit 2) unless --force."""
    target = tmp_path / "erasure.toml"
    code, out, _ = erasure("discover", "--url", canary_url, "--out", str(target))
    assert (code, out.startswith(f"wrote {target}")) == (0, True)
    assert stat.S_IMODE(target.stat().st_mode) & 0o022 == 0
    target.write_text("mine\n")
    code, _, err = erasure("discover", "--url", canary_url, "--out", str(target))
    assert (code, target.read_text(), err.count("\n")) == (2, "mine\n", 1)
    assert "exists (add --force" in err
    code, _, _ = erasure("discover", "--url", canary_url, "--out", str(target), "--force")
    assert code == 0 and "[[systems]]" in target.read_text()


def test_a_url_that_cannot_connect_exits_1_naming_it_without_the_password(erasure: Run) -> None:
    """An unreachable database: exit 1, one line naming the URL with its password hidden."""
    code, out, err = erasure("discover", "--url", "postgresql://bob:s3cr3t-pw@127.0.0.1:1/app")
    assert (code, out, err.count("\n")) == (1, "", 1)
    assert "postgresql://bob:***@127.0.0.1:1/app" in err
    assert "s3cr3t-pw" not in err


def test_a_password_never_reaches_the_draft(postgres_url: str) -> None:
    """A URL's password and secret query parameters are left out of the draft, which says where to put them."""
    url = sa.make_url(postgres_url).set(password="s3cr3t-pw").update_query_dict({"sslmode": "prefer"})
    text = render(discover([url.render_as_string(hide_password=False)], [], identifier_types([], {})))
    assert "s3cr3t-pw" not in text
    assert "# no password is written here" in text
    assert draft_url(sa.make_url("postgresql://bob:pw1@db/app?sslmode=require&password=pw2")) == (
        "postgresql://bob@db/app?sslmode=require", True)


@pytest.mark.parametrize(("argv", "problem"), [
    ([], "give at least one --url or --snapshot"),
    (["--snapshot", "a", "--snapshot", "b", "--format", "csv", "--format", "csv", "--format", "csv"], "--format"),
    (["--url", "sqlite:///x.db", "--format", "csv"], "--format"),
    (["--url", "not a url://x"], "--url: not a SQLAlchemy URL"),
    (["--url", "sqlite:///x.db", "--identifier", "email"], "--identifier"),
    (["--url", "sqlite:///x.db", "--config", "/nonexistent/erasure.toml"], "--config"),
])
def test_bad_options_exit_2_with_one_line(erasure: Run, argv: list[str], problem: str) -> None:
    """Malformed options are refused before any source is read: exit 2, one line naming the problem."""
    code, out, err = erasure("discover", *argv)
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert problem in err
