"""The sql actions that go row by row, by primary key: an anonymize whose `set` masks (each row its
own pseudonym or random value, made from what it holds now), and a delete_unreferenced, which
deletes the matched rows that no row refers to (by the foreign keys reflected from every table of
the database) and anonymizes the others. The rows are selected with the match, FOR UPDATE, then
changed by key in the same transaction: nothing but the matched rows is ever touched."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from connectors.sql.config import SqlTable
from connectors.sql.masks import Masker, mask_length
from connectors.sql.match import CHUNK, Condition

SYSTEM_SCHEMAS = frozenset({"information_schema"})


@dataclass(frozen=True)
class Referrer:
    """A foreign key pointing at a table: the referring table and its columns, and the columns they
    refer to."""

    table: sa.TableClause
    columns: tuple[str, ...]
    referred: tuple[str, ...]

    def refers_to(self, table: sa.Table) -> Condition:
        """Some row of the referring table refers to the outer query's row of `table`."""
        other = self.table.alias()  # the table may refer to itself
        return sa.exists().where(*(other.c[c] == table.c[r] for c, r in zip(self.columns, self.referred, strict=True)))


def referrers(conn: sa.Connection, targets: Iterable[sa.Table]) -> dict[str, tuple[Referrer, ...]]:
    """Every foreign key that points at one of the tables, by its name as listed; the referring
    tables are looked for in the default schema, the listed tables' and, on PostgreSQL, every schema."""
    inspector = sa.inspect(conn)
    default = inspector.default_schema_name
    wanted = {(t.name, t.schema if t.schema != default else None): t.fullname for t in targets}
    schemas: set[str | None] = {None, *(schema for _, schema in wanted)}
    if conn.dialect.name == "postgresql":
        schemas |= {s for s in inspector.get_schema_names() if s not in SYSTEM_SCHEMAS and s != default}
    found: dict[str, list[Referrer]] = {name: [] for name in wanted.values()}
    for schema in schemas:
        for (_, name), keys in inspector.get_multi_foreign_keys(schema=schema).items():
            for key in keys:
                schema_referred = key["referred_schema"]
                referred = (key["referred_table"], schema_referred if schema_referred != default else None)
                if referred in wanted:
                    columns = tuple(key["constrained_columns"])
                    clause = sa.table(name, *(sa.column(c) for c in columns), schema=schema)
                    found[wanted[referred]].append(Referrer(clause, columns, tuple(key["referred_columns"])))
    return {name: tuple(refs) for name, refs in found.items()}


def delete_unreferenced(conn: sa.Connection, table: sa.Table, match: Condition, refs: Sequence[Referrer]) -> int:
    """Delete the matched rows no row refers to (again and again where the table refers to itself,
    so a chain of the subject's rows goes); the number deleted."""
    key, deleted = list(table.primary_key.columns), 0
    self_referring = any(ref.table.name == table.name and ref.table.schema == table.schema for ref in refs)
    while True:
        free = sa.select(*key).where(match, *(~ref.refers_to(table) for ref in refs)).with_for_update()
        rows = [tuple(row) for row in conn.execute(free)]
        for i in range(0, len(rows), CHUNK):
            deleted += conn.execute(sa.delete(table).where(match, keyed(key, rows[i : i + CHUNK]))).rowcount
        if not rows or not self_referring:
            return deleted


def anonymize(conn: sa.Connection, table: sa.Table, entry: SqlTable, match: Condition, masker: Masker) -> int:
    """Set the literal columns and mask the masked ones of every matched row not anonymized yet; the
    number of rows changed."""
    key = list(table.primary_key.columns)
    masks = [(table.c[column], mask, mask_length(mask, table.c[column])) for column, mask in entry.masks]
    changes = []
    for row in conn.execute(_rows(table, entry, match).with_for_update()):
        stored, literal_pending = row[len(key) : len(key) + len(masks)], row[-1]
        masked = [masker.mask(mask, value, length) for (_, mask, length), value in zip(masks, stored, strict=True)]
        if literal_pending or masked != list(stored):
            changes.append({**{f"erasure_key_{i}": v for i, v in enumerate(row[: len(key)])},
                            **{f"erasure_set_{j}": v for j, v in enumerate(masked)}})
    if changes:
        values = {table.c[c]: sa.bindparam(None, v, type_=table.c[c].type) for c, v in entry.literals}
        values |= {column: sa.bindparam(f"erasure_set_{j}", type_=column.type)
                   for j, (column, _, _) in enumerate(masks)}
        by_key = [column == sa.bindparam(f"erasure_key_{i}", type_=column.type) for i, column in enumerate(key)]
        conn.execute(sa.update(table).where(*by_key).values(values), changes)
    return len(changes)


def left(conn: sa.Connection, table: sa.Table, entry: SqlTable, match: Condition, masker: Masker) -> int:
    """The matched rows not anonymized yet: a literal column still differs, or a masked one holds no mask."""
    width = len(table.primary_key.columns)
    return sum(1 for row in conn.execute(_rows(table, entry, match))
               if row[-1] or not all(masker.masked(value) for value in row[width:-1]))


def _rows(table: sa.Table, entry: SqlTable, match: Condition) -> sa.Select[Any]:
    """The matched rows' keys, masked columns, and whether a literal column still differs (1 or 0)."""
    differs = [table.c[c].is_distinct_from(sa.bindparam(None, v, type_=table.c[c].type)) for c, v in entry.literals]
    pending = sa.case((sa.or_(*differs), 1), else_=0) if differs else sa.literal(0)
    return sa.select(*table.primary_key.columns, *(table.c[c] for c, _ in entry.masks), pending).where(match)


def keyed(key: list[sa.Column[Any]], rows: list[tuple[Any, ...]]) -> Condition:
    """The rows with these primary keys."""
    if len(key) == 1:
        return key[0].in_(sa.bindparam(None, [r[0] for r in rows], type_=key[0].type, expanding=True))
    return sa.tuple_(*key).in_(rows)


def primary_key_missing(tables: Mapping[str, sa.Table], entries: Iterable[SqlTable]) -> str | None:
    """The first table that masks or deletes unreferenced rows but has no primary key to do it by."""
    for entry in entries:
        if (entry.masks or entry.action == "delete_unreferenced") and not tables[entry.name].primary_key.columns:
            return entry.name
    return None
