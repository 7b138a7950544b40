"""`erasure discover` without its command line: read each database (read-only) and each snapshot
location, plan each, and gather the draft, with the system names and URLs it writes (no password)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa
import structlog

from worker.discover.classify import classify, personal
from worker.discover.draft import Draft, SnapshotSystem, SqlSystem
from worker.discover.identifiers import DIGITS_PATTERN, DRAFTED_PATTERN, IdType
from worker.discover.model import Table
from worker.discover.plan import Planner, Risk
from worker.discover.reflect import overlap, parse_url, read_only, reflect, shown
from worker.discover.snapshots import read_location, system_name

log = structlog.get_logger("erasure.discover")
SECRET_QUERY = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)


def discover(urls: Sequence[str], snapshots: Sequence[tuple[str, str]], types: list[IdType]) -> Draft:
    """The draft for these databases and (location, format) snapshot locations."""
    parsed = [parse_url(url) for url in urls]  # every URL checked before any is opened
    names: set[str] = set()
    databases, kinds = [], dict[str, set[str]]()
    for url in parsed:
        with read_only(url) as conn:
            tables = reflect(conn, types)
            plan = Planner(tables, types, lambda *args: overlap(conn, *args)).run()
        log.info("discover.database", url=shown(url), tables=len(tables), entries=len(plan.entries))
        text, had_secret = draft_url(url)
        databases.append(SqlSystem(_unique(_database_name(url), names), text, had_secret, len(tables), plan))
        for kind in types:
            kinds.setdefault(kind.name, set()).update(
                tables[t].columns[c].kind for t, c in kind.table_hints() if t in tables and c in tables[t].columns)
    primary = {t for db in databases for t in db.plan.primary_types}
    systems = [_snapshot(read_location(location, fmt, types), location, fmt, types, primary, names)
               for location, fmt in ((_prefix(location), fmt) for location, fmt in snapshots)]
    return Draft([_tightened(kind, kinds.get(kind.name, set())) for kind in types], databases, systems,
                 _unused_hints(types, databases))


def _prefix(location: str) -> str:
    """An s3:// location as a prefix ending in '/' (else it would match its neighbours' keys too)."""
    return location + "/" if location.startswith("s3://") and location.count("/") > 2 and not location.endswith("/") \
        else location


def draft_url(url: sa.URL) -> tuple[str, bool]:
    """The URL as the draft writes it: no password, no secret query parameter, a SQLite path made
    absolute; and whether anything secret was left out."""
    query = {k: v for k, v in url.query.items() if not SECRET_QUERY.search(k)}
    sqlite = url.get_backend_name() == "sqlite" and url.database
    database = str(Path(url.database or "").resolve()) if sqlite else url.database
    # URL.create, not URL.set: set(password=None) keeps the password
    clean = sa.URL.create(url.drivername, url.username, None, url.host, url.port, database, query)
    return clean.render_as_string(hide_password=False), url.password is not None or len(query) < len(url.query)


def _database_name(url: sa.URL) -> str:
    base = Path(url.database).stem if url.get_backend_name() == "sqlite" and url.database else url.database
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base or url.host or "db").strip("-._")[:64] or "db"


def _unique(name: str, taken: set[str]) -> str:
    """The name, or name-2, name-3... if another system has it."""
    chosen, n = name, 1
    while chosen in taken:
        n += 1
        chosen = f"{name[:60]}-{n}"
    taken.add(chosen)
    return chosen


def _snapshot(table: Table, location: str, fmt: str, types: list[IdType], primary: set[str],
              names: set[str]) -> SnapshotSystem:
    """A snapshot system whose where is its best identifier column (a type an identity table's key
    holds first, then a key type like user_id); or, with none, its personal columns on the risk list."""
    found = personal(classify(table, types))
    order, keyed = [k.name for k in types], {k.name for k in types if k.keyed}
    typed = sorted(((c, f.types[0]) for c, f in found.items() if f.types),
                   key=lambda pair: (pair[1] not in primary, pair[1] not in keyed, order.index(pair[1]), pair[0]))
    name = _unique(system_name(location), names)
    if not typed:
        reason = "no column holds an identifier type: no where can be drafted"
        return SnapshotSystem(name, location, fmt, None,
                              risks=[Risk(c, f.category, f.evidence, reason) for c, f in found.items()])
    column, kind = typed[0]
    why = [f"{name}: snapshots holding {kind} in {column} ({table.sampled} rows of the newest sampled)",
           *(f"  {c} ({f.category}{': ' + f.evidence if f.evidence else ''})" for c, f in found.items())]
    why += [f"  also holds {k} in {c}: rows lacking {column} are found only by another system on this location "
            f"with where = {{ {c} = \"{k}\" }}" for c, k in typed[1:]]
    return SnapshotSystem(name, location, fmt, (column, kind), why)


def _tightened(kind: IdType, column_kinds: set[str]) -> IdType:
    """A type named on the command line alone, whose hinted columns are all integers, takes digits."""
    if kind.pattern == DRAFTED_PATTERN and column_kinds == {"integer"}:
        return replace(kind, pattern=DIGITS_PATTERN)
    return kind


def _unused_hints(types: list[IdType], databases: list[SqlSystem]) -> list[str]:
    """The table.column hints that named no table of any database."""
    used = {entry.table for db in databases for entry in db.plan.entries}
    return [f"--identifier {kind.name}={t}.{c}: no such table in the drafted systems"
            for kind in types for t, c in kind.table_hints() if t not in used]
