"""Set-based erasure: a batch of subjects erased with statements that take them all at once, in one
transaction, tables in foreign-key order, `table.column` references followed for every subject (owners.py
tells whose each row is). Each subject's outcome, counts and evidence are those of erasing it alone, one after
another in the batch's order: a row two subjects match is counted once, for the first of them.

A table is taken in one statement per chunk of values where the dialect reads rows back from it (DELETE ...
RETURNING on PostgreSQL, SQLite 3.35+ and MariaDB 10.5+; UPDATE ... RETURNING on PostgreSQL and SQLite, where
the `set` leaves the `where` columns alone) and a `where` has one column; otherwise a keyed select (FOR
UPDATE) tells the rows and their owners, and they are changed by primary key. Masks, delete_unreferenced and
a keyless table that a select must key go subject by subject, in the same transaction.

A statement that fails (a foreign key, a trigger, a lock timeout) rolls the batch back; it is split in two and
each half settled on its own, down to the subject that fails alone, whose error takes its place."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy import exc as sa_exc

from connectors.base import Outcome, Retention, Subject
from connectors.errors import ConnectorError
from connectors.sql import rows
from connectors.sql.config import SqlConfig, SqlTable, reference_order
from connectors.sql.masks import Masker
from connectors.sql.match import CHUNK, Condition, combine, equal, pending
from connectors.sql.owners import Owners, Unattributed, owners
from connectors.sql.owners import Sql as Matcher

log = structlog.get_logger("erasure.sql")

class Sql(Matcher, Protocol):
    """The sql connector as read here (connector.py imports this module, never the reverse)."""

    config: SqlConfig

    @property
    def engine(self) -> sa.Engine:
        """The connector's engine."""

    def _reflect(self, conn: sa.Connection) -> Any: ...

    def _match(self, conn: sa.Connection, schema: Any, subject: Subject) -> list[list[Condition]]: ...

    def _left(self, conn: sa.Connection, table: sa.Table, entry: SqlTable, matches: list[Condition],
              subject: Subject) -> int: ...

    def _masker(self) -> Masker: ...

    def _errors(self, secrets: Iterable[str], table: str | None = None) -> AbstractContextManager[None]: ...


class Split(Exception):  # noqa: N818 - a signal: the batch is rolled back and split
    """A table's statement failed for the batch; `error` is what it failed with, as the connector's error."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(str(error))
        self.error = error


Tell = Callable[[int, list[int]], None]  # before a commit: the first subject's index, and each subject's rows


def erase(sql: Sql, subjects: list[Subject], tell: Tell | None = None,
          first: int = 0) -> list[Outcome | ConnectorError]:
    """Each subject's outcome, or its error where it alone failed; an error that is no statement's (the
    database unreachable, a table missing) is raised for all. `tell` hears each transaction's rows per
    subject just before it commits (`first`: where these subjects start among those erase_many was given)."""
    if not subjects:
        return []
    try:
        try:
            return list(_batch(sql, subjects, alone=False, tell=tell, first=first))
        except Unattributed:  # the engine compares otherwise than Python: the safe way, subject by subject
            log.info("sql.batch_alone", system=sql.config.name, subjects=len(subjects),
                     why="a matched row no subject's value explains (a padded CHAR, a citext column): "
                         "the batch is done subject by subject")
            return list(_batch(sql, subjects, alone=True, tell=tell, first=first))
    except Split as split:
        cause = split.error.__cause__
        if getattr(cause, "connection_invalidated", False) or isinstance(cause, sa_exc.InterfaceError):
            raise split.error from cause
        if len(subjects) == 1:
            return [split.error]
        log.info("sql.batch_split", system=sql.config.name, subjects=len(subjects),
                 error=(str(split.error).splitlines() or [""])[0])  # redacted: sql._errors knew the values
        half = len(subjects) // 2
        return [*erase(sql, subjects[:half], tell, first), *erase(sql, subjects[half:], tell, first + half)]


def verify(sql: Sql, subjects: list[Subject]) -> list[int]:
    """Each subject's rows still to delete or anonymize, those of tables under a retention not counted."""
    now = datetime.now(UTC)
    live = [i for i, entry in enumerate(sql.config.tables) if not (entry.retain and entry.retain.holds(now))]
    with sql._errors(_secrets(subjects)), sql.engine.connect() as conn:
        schema = sql._reflect(conn)
        try:
            batch = Batch(sql, conn, schema, subjects)
            per_table = [batch.left(i) for i in live]
        except Unattributed:
            return [sum(one.left(i)[0] for i in live) for one in (Alone(sql, conn, schema, s) for s in subjects)]
        return [sum(table[s] for table in per_table) for s in range(len(subjects))]


def _batch(sql: Sql, subjects: list[Subject], alone: bool, tell: Tell | None = None,
           first: int = 0) -> list[Outcome]:
    """The batch erased in one transaction: set-based, or (alone) each subject in turn as if by itself;
    `tell` hears the rows it changed per subject before it commits."""
    now, secrets, everyone = datetime.now(UTC), _secrets(subjects), list(range(len(subjects)))
    applied: list[list[dict[str, Any]]] = [[] for _ in subjects]
    held: list[list[tuple[str, Retention, int]]] = [[] for _ in subjects]
    with sql._errors(secrets), sql.engine.begin() as conn:
        schema = sql._reflect(conn)
        # made as they come: a subject alone is matched after the subjects before it have changed their rows
        groups = (((Alone(sql, conn, schema, subjects[s]), [s]) for s in everyone) if alone
                  else iter([(Batch(sql, conn, schema, subjects), everyone)]))
        for group, at in groups:
            for i in schema.apply_order:
                entry = sql.config.tables[i]
                if entry.retain and entry.retain.holds(now):
                    for s, kept in zip(at, group.left(i), strict=True):
                        applied[s].append({"table": entry.name, "action": "retain", "rows": 0, "rows_kept": kept,
                                           "retained": entry.retain.to_json()})
                        held[s] += [(entry.name, entry.retain, kept)] if kept else []
                    continue
                try:
                    with sql._errors(secrets, entry.name):
                        done = group.apply(i)
                except ConnectorError as error:
                    raise Split(error) from error
                for s, evidence in zip(at, done, strict=True):
                    applied[s].append(evidence)
        if tell is not None:  # inside the transaction: told before the commit, so a kill after it loses no count
            tell(first, [sum(a["rows"] for a in each) for each in applied])
    return [_outcome(a, h) for a, h in zip(applied, held, strict=True)]


class Alone:
    """One subject matched as erasing it alone matches it (one statement per table and chunk), with Batch's
    `apply` and `left` for a group of one."""

    def __init__(self, sql: Sql, conn: sa.Connection, schema: Any, subject: Subject) -> None:
        self.sql, self.conn, self.schema, self.subject = sql, conn, schema, subject
        self.matches = sql._match(conn, schema, subject)

    def apply(self, i: int) -> list[dict[str, Any]]:
        """One table's action on the subject's rows, and its evidence."""
        return [_apply_one(self.sql, self.conn, self.schema, self.sql.config.tables[i], self.matches[i])]

    def left(self, i: int) -> list[int]:
        """The subject's rows in one table its action has yet to delete or anonymize."""
        entry = self.sql.config.tables[i]
        return [self.sql._left(self.conn, self.schema.tables[entry.name], entry, self.matches[i], self.subject)]


class Batch:
    """The batch's matches in one transaction: `table.column` references found for every subject before
    anything changes, then each table's action and counts per subject."""

    def __init__(self, sql: Sql, conn: sa.Connection, schema: Any, subjects: Sequence[Subject]) -> None:
        self.sql, self.conn, self.schema, self.subjects = sql, conn, schema, subjects
        entries = sql.config.tables
        wanted = sorted({(ref.table, ref.column) for entry in entries for _, ref in entry.where if ref.table})
        self.found: list[dict[tuple[str, str], dict[Any, None]]] = [{key: {} for key in wanted} for _ in subjects]
        self.owners: dict[int, Owners] = {}
        for i in reference_order(entries):
            entry, table = entries[i], schema.tables[entries[i].name]
            self.owners[i] = who = owners(sql, conn, table, entry, subjects, self.found)
            columns = [column for name, column in wanted if name == entry.name]
            for condition in who.conditions() if columns else ():
                query = sa.select(*who.exprs, *(table.c[c] for c in columns)).where(condition)
                for row in conn.execute(query):
                    for s in who.of(row):
                        for column, value in zip(columns, row[who.width :], strict=True):
                            if value is not None:
                                self.found[s][(entry.name, column)][value] = None

    def apply(self, i: int) -> list[dict[str, Any]]:
        """One table's action over the batch, and each subject's evidence: counts, never values."""
        entry, table, conn = self.sql.config.tables[i], self.schema.tables[self.sql.config.tables[i].name], self.conn
        key = list(table.primary_key.columns)
        if entry.masks or entry.action == "delete_unreferenced" or not (self._returning(entry) or key):
            return [_apply_one(self.sql, conn, self.schema, entry, self.conditions(i, s))
                    for s in range(len(self.subjects))]
        who, counts = self.owners[i], [0] * len(self.subjects)
        for condition in who.conditions():
            if self._returning(entry):
                for row in conn.execute(_changed(table, entry, condition).returning(*who.exprs)).all():
                    counts[_first_of(who.of(row))] += 1
                continue
            taken: dict[tuple[Any, ...], int] = {}
            for row in conn.execute(sa.select(*who.exprs, *key).where(condition, *pending(table, entry))
                                    .with_for_update()):
                if owned := who.of(row):  # none: ANDed columns paired two subjects' values
                    taken.setdefault(tuple(row[who.width :]), owned[0])
            keys = list(taken)
            for j in range(0, len(keys), CHUNK):
                conn.execute(_changed(table, entry, rows.keyed(key, keys[j : j + CHUNK])))
            for s in taken.values():
                counts[s] += 1
        return [{"table": entry.name, "action": entry.action, "rows": count} for count in counts]

    def left(self, i: int) -> list[int]:
        """Each subject's rows in one table its action has yet to delete or anonymize (a row two subjects
        match is left for each)."""
        entry, table = self.sql.config.tables[i], self.schema.tables[self.sql.config.tables[i].name]
        if entry.masks:
            return [self.sql._left(self.conn, table, entry, self.conditions(i, s), subject)
                    for s, subject in enumerate(self.subjects)]
        who, counts = self.owners[i], [0] * len(self.subjects)
        with self.sql._errors(_secrets(self.subjects), entry.name):
            for condition in who.conditions():
                for row in self.conn.execute(sa.select(*who.exprs).where(condition, *pending(table, entry))):
                    for s in who.of(row):
                        counts[s] += 1
        return counts

    def conditions(self, i: int, s: int) -> list[Condition]:
        """One subject's match of one table (as erasing it alone matches it), one condition per chunk."""
        entry, table, subject = self.sql.config.tables[i], self.schema.tables[self.sql.config.tables[i].name], \
            self.subjects[s]
        return combine([
            self.sql._matching(self.conn, table.c[column], ref, subject.values(ref.identifier)) if ref.identifier
            else equal(table.c[column], list(self.found[s][(ref.table, ref.column)]), self.conn.dialect.name == "mysql")
            for column, ref in entry.where
        ])

    def _returning(self, entry: SqlTable) -> bool:
        """Whether one statement per chunk can change the rows and read back their keys."""
        if len(entry.where) != 1:
            return False
        if entry.action == "delete":
            return bool(self.conn.dialect.delete_returning)
        changed = {column for column, _ in entry.literals} & {column for column, _ in entry.where}
        return bool(self.conn.dialect.update_returning) and not changed  # RETURNING reads the new row

def _apply_one(sql: Sql, conn: sa.Connection, schema: Any, entry: SqlTable, matches: list[Condition]) -> dict[str, Any]:
    """One table's action on one subject's rows, as erasing it alone does, and its evidence."""
    table, deleted = schema.tables[entry.name], 0
    if entry.action == "delete_unreferenced":
        refs = schema.referrers[table.fullname]
        deleted = sum(rows.delete_unreferenced(conn, table, match, refs) for match in matches)
    if entry.masks:
        masker = sql._masker()
        changed = sum(rows.anonymize(conn, table, entry, match, masker) for match in matches)
    else:
        changed = sum(conn.execute(_changed(table, entry, match)).rowcount for match in matches)
    if entry.action != "delete_unreferenced":
        return {"table": entry.name, "action": entry.action, "rows": changed}
    return {"table": entry.name, "action": entry.action, "rows": deleted + changed, "rows_deleted": deleted,
            "rows_anonymized": changed}


def _changed(table: sa.Table, entry: SqlTable, match: Condition) -> sa.Delete | sa.Update:
    """The DELETE or UPDATE of the matched rows (an UPDATE sets the literal values and skips rows already
    anonymized)."""
    if entry.action == "delete":
        return sa.delete(table).where(match)
    values = {table.c[column]: value for column, value in entry.literals}
    return sa.update(table).where(match, *pending(table, entry)).values(values)


def _first_of(owned: list[int]) -> int:
    """The first owner of a row read back from a one-column match (always someone's: owners.py)."""
    if not owned:
        raise Unattributed
    return owned[0]


def _secrets(subjects: Sequence[Subject]) -> frozenset[str]:
    """Every value of every subject of the batch, kept out of errors."""
    return frozenset(v for subject in subjects for v in subject.all_values())


def _outcome(applied: list[dict[str, Any]], held: list[tuple[str, Retention, int]]) -> Outcome:
    """The erase's outcome: exempt if a retained table kept some of the subject's rows, rechecked
    when the first retention with an end is over."""
    items = sum(a["rows"] for a in applied)
    if not held:
        return Outcome(items, {"tables": applied})
    reason = "; ".join(f"table {name} {retain.describe()} ({kept} row{'' if kept == 1 else 's'} kept)"
                       for name, retain, kept in held)
    ends = [retain.ends_at for _, retain, _ in held if retain.ends_at]
    return Outcome(items, {"tables": applied}, exempt_reason=reason, recheck_at=min(ends, default=None))
