"""The draft's text: TOML that `worker.config` loads, strings escaped whatever they hold, and names read
from a database unable to break a comment line into TOML of their own."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa

from worker.config import load
from worker.discover.draft import Draft, render, toml_string
from worker.discover.identifiers import IdType, identifier_types
from worker.discover.run import discover


@pytest.mark.parametrize("text", [r"^[^@\s]+@[^@\s]+$", "it's", 'say "hi"', "tab\there", "new\nline", "del\x7f",
                                  "back\\slash and 'quote'", "ünïcode ✓"])
def test_a_string_is_written_so_toml_reads_it_back_the_same(text: str) -> None:
    """Any string, quotes, backslashes and control characters included, reads back unchanged."""
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


def test_identifier_types_are_written_as_the_config_reads_them(tmp_path: Path) -> None:
    """Patterns and normalize steps (one, several, none) load back through worker.config."""
    types = [IdType("code", "^C-[0-9]{6}$", ("trim", "upper"), origin="config"),
             *identifier_types([], {})]
    text = render(Draft(types, [], []))
    path = tmp_path / "erasure.toml"
    path.write_text(text + '[[systems]]\nname = "x"\nkind = "stub"\nuses = ["code", "email", "user_id"]\n')
    identifiers = load(path).identifiers
    assert identifiers["code"].fold == ("trim", "upper") and identifiers["code"].pattern.pattern == "^C-[0-9]{6}$"
    assert identifiers["email"].fold == ("lower",) and identifiers["user_id"].fold == ()


def test_a_name_with_a_line_break_cannot_write_toml(sqlite_url: str, tmp_path: Path) -> None:
    """A column named with newlines and TOML in it is risk-listed with the breaks blanked, and adds no key."""
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql('CREATE TABLE people (id INTEGER PRIMARY KEY, "email\n[api]\nmax_body_bytes = 1" TEXT)')
    engine.dispose()
    text = render(discover([sqlite_url], [], identifier_types([], {})))
    path = tmp_path / "erasure.toml"
    path.write_text(text)
    assert set(tomllib.loads(text)) == {"identifiers", "resolvers", "systems"}
    assert [t.name for t in load(path).systems[0].tables] == ["users"]  # type: ignore[attr-defined]
    assert "people.email?[api]?max_body_bytes = 1" in text.split("# RISK LIST")[1]


def test_a_database_without_identifier_columns_is_a_commented_system(sqlite_url: str) -> None:
    """With no column holding an identifier type, the system is drafted commented out, its columns risk-listed."""
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE leads (id INTEGER PRIMARY KEY, first_name TEXT, phone TEXT)")
    engine.dispose()
    text = render(discover([sqlite_url], [], identifier_types([], {})))
    assert "systems" not in tomllib.loads(text)
    assert "# app: no table holds an identifier type" in text
    assert "leads.first_name" in text.split("# RISK LIST")[1] and "leads.phone" in text.split("# RISK LIST")[1]


def test_two_databases_get_two_systems_with_distinct_names(tmp_path: Path) -> None:
    """Two databases whose files share a name become systems `app` and `app-2`, each with its resolvers."""
    urls = []
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        urls.append(f"sqlite:///{tmp_path / folder / 'app.db'}")
        engine = sa.create_engine(urls[-1])
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        engine.dispose()
    draft = tomllib.loads(render(discover(urls, [], identifier_types([], {}))))
    assert [s["name"] for s in draft["systems"]] == ["app", "app-2"]
    assert [r["system"] for r in draft["resolvers"]] == ["app", "app", "app-2", "app-2"]


def test_a_text_key_is_flagged_against_a_digits_pattern(sqlite_url: str) -> None:
    """An identity table keyed by text gets a comment: user_id's default pattern takes digits only."""
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id VARCHAR(20) PRIMARY KEY, email TEXT)")
    engine.dispose()
    text = render(discover([sqlite_url], [], identifier_types([], {})))
    assert "check: id is text, and user_id's pattern is ^[0-9]{1,18}$: change the pattern" in text
