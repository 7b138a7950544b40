"""The draft `erasure.toml` as text: the identifier types, the resolvers, one system per database and
per snapshot location with a comment on every table saying why it is there, and at the end the risk
list a DPO decides on. No password and no sampled value is ever written; only shares of values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from worker.discover.identifiers import DRAFTED_PATTERN, IdType
from worker.discover.model import SAMPLE_ROWS
from worker.discover.plan import Plan, Risk

BARE = re.compile(r"[A-Za-z0-9_-]+")
ORIGINS = {"default": "a default type", "config": "from --config", "--identifier": "from --identifier"}
UNPRINTABLE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
PASSWORD_NOTE = ("# no password is written here: put it back into the URL (and keep this file secret), or give it "
                 "to the driver another way (~/.pgpass, ~/.my.cnf)")


@dataclass
class SqlSystem:
    """A database's system: its name, URL without credentials, and plan."""

    name: str
    url: str
    had_password: bool
    tables: int
    plan: Plan


@dataclass
class SnapshotSystem:
    """A snapshot location's system, if a column holds an identifier type (else only risks)."""

    name: str
    location: str
    format: str
    where: tuple[str, str] | None
    why: list[str] = field(default_factory=list)
    risks: list[Risk] = field(default_factory=list)


@dataclass
class Draft:
    """Everything the draft says."""

    types: list[IdType]
    databases: list[SqlSystem]
    snapshots: list[SnapshotSystem]
    notes: list[str] = field(default_factory=list)


def toml_string(text: str) -> str:
    """A TOML string: literal ('...') when it holds a backslash and can be, so patterns stay readable; else basic."""
    if "\\" in text and "'" not in text and not any(ord(c) < 32 or ord(c) == 127 for c in text):
        return f"'{text}'"
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    """A TOML value: string, boolean, number, date, local datetime, or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return toml_string(str(value))


def inline(pairs: Iterable[tuple[str, Any]]) -> str:
    """`{ a = "x", b = 1 }`."""
    return "{ " + ", ".join(f"{k if BARE.fullmatch(k) else toml_string(k)} = {toml_value(v)}" for k, v in pairs) + " }"


def render(draft: Draft) -> str:
    """The whole draft as TOML text."""
    sources = [f"{db.url} ({db.tables} tables)" for db in draft.databases]
    sources += [f"{s.location} ({s.format})" for s in draft.snapshots]
    lines = ["# erasure.toml: a DRAFT written by `erasure discover`. Review it before any erasure runs with it:",
             "# every table says why it is here, and the risk list at the end is for a DPO to decide on.",
             "# How the draft was decided and how to review it: docs/discover.md",
             *(f"# source: {source}" for source in sources),
             f"# sampled: at most {SAMPLE_ROWS} rows a table, read-only; only shares of values are written here",
             *(f"# note: {note}" for note in draft.notes), "", "[identifiers]"]
    for kind in draft.types:
        fold = [("normalize", kind.fold[0] if len(kind.fold) == 1 else list(kind.fold))] if kind.fold else []
        note = "drafted: tighten it" if kind.pattern == DRAFTED_PATTERN else ORIGINS[kind.origin]
        lines.append(f"{kind.name} = {inline([('pattern', kind.pattern), *fold])}  # {note}")
    for db in draft.databases:
        lines += _resolvers(db)
    for db in draft.databases:
        lines += _database(db)
    for snapshot in draft.snapshots:
        lines += _snapshot(snapshot)
    lines += _risk_list(draft)
    # a name read from a database or a file never breaks a line: it could otherwise write TOML of its own
    return "\n".join(UNPRINTABLE.sub("?", line) for line in lines) + "\n"


def _resolvers(db: SqlSystem) -> list[str]:
    lines = []
    for r in db.plan.resolvers:
        lines += ["", f"# {r.source} -> {r.target} through {r.table}, the identity table of {db.name}", "[[resolvers]]",
                  *(f"{k} = {toml_value(v)}" for k, v in (("system", db.name), ("from", r.source), ("to", r.target),
                                                          ("table", r.table), ("column", r.column),
                                                          ("select", r.select)))]
    return lines


def _database(db: SqlSystem) -> list[str]:
    lines = ["", "[[systems]]", f"name = {toml_value(db.name)}", 'kind = "sql"']
    lines += [PASSWORD_NOTE] if db.had_password else []
    lines.append(f"url = {toml_value(db.url)}")
    if not db.plan.entries:
        lines.insert(1, f"# {db.name}: no table holds an identifier type: no sql system can be drafted for it")
        return [f"# {line}" if line and not line.startswith("#") else line for line in lines]
    for entry in db.plan.entries:
        lines += ["", *(f"  # {why}" for why in entry.why), "  [[systems.tables]]",
                  f"  name   = {toml_value(entry.table)}", f"  where  = {inline(entry.where)}",
                  f"  action = {toml_value(entry.action)}"]
        lines += [f"  set    = {inline(entry.assign)}"] if entry.assign else []
    if db.plan.notes:
        lines += ["", f"# notes on {db.name}:", *(f"#   {note}" for note in dict.fromkeys(db.plan.notes))]
    return lines


def _snapshot(snapshot: SnapshotSystem) -> list[str]:
    if snapshot.where is None:
        return ["", f"# {snapshot.location} ({snapshot.format}): no column holds an identifier type: "
                    "no snapshot system can be drafted for it (see the risk list)"]
    store = ["# an S3-compatible store other than AWS: add endpoint_url (and region) as for kind = \"s3\""] \
        if snapshot.location.startswith("s3://") else []
    return ["", *(f"# {why}" for why in snapshot.why), *store, "[[systems]]",
            *(f"{k} = {toml_value(v)}" for k, v in (("name", snapshot.name), ("kind", "snapshot"),
                                                   ("location", snapshot.location), ("format", snapshot.format))),
            f"where = {inline([snapshot.where])}"]


def _risk_list(draft: Draft) -> list[str]:
    risks = [(db.name, risk) for db in draft.databases for risk in db.plan.risks]
    risks += [(s.name, risk) for s in draft.snapshots for risk in s.risks]
    lines = ["", "# RISK LIST: columns that look personal but that the draft does not erase (no identifier",
             "# reaches them, or they were left out, as said). A DPO decides on each: erase it (add a table or",
             "# a system above), keep it for a stated reason (retain = { reason = \"...\" }), or record that it",
             "# is not personal data."]
    if not risks:
        return [*lines, "#   (none found)"]
    by_reason: dict[tuple[str, str], list[Risk]] = {}
    for system, risk in risks:
        by_reason.setdefault((system, risk.why), []).append(risk)
    for (system, why), group in by_reason.items():
        lines += ["#", f"#   {system}: {why}"]
        width = max(len(risk.place) for risk in group)
        lines += [f"#     {risk.place:<{width}}  [{risk.category}]  {risk.evidence}".rstrip() for risk in group]
    return lines
