"""The draft `erasure discover` writes for Fides' sample database passes `erasure check` on SQLite,
PostgreSQL and MariaDB: every table and column it names is there, and no foreign key stops a delete."""

from __future__ import annotations

from pathlib import Path

from worker.config import load
from worker.discover.draft import render
from worker.discover.identifiers import identifier_types
from worker.discover.run import discover
from worker.engine import check


def test_the_fides_draft_passes_the_check(fides_url: str, tmp_path: Path) -> None:
    """Every system of the draft passes, with nothing but notes."""
    path = tmp_path / "erasure.toml"
    path.write_text(render(discover([fides_url], [], identifier_types([], {}))))
    found = check.run(load(path))
    assert [(r.name, r.found.problems) for r in found.systems] == [(found.systems[0].name, ())]
    assert found.ok
