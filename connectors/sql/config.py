"""The `sql` kind's configuration: a database URL and the tables that hold a subject's rows,
each with its `where` (identifier types, folded unless `match = "exact"`, or a listed table's
column), its action and its `set` (values, or masks: `{ hash = true }`, `{ random = true }`); and a
resolver's lookup written as names."""

from __future__ import annotations

import graphlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time
from typing import Any, Literal, Self

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from connectors.base import (
    ConfigReader,
    Retention,
    SystemConfig,
)
from connectors.normalize import Fold

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


TABLE_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*")


SCALARS = (str, int, float, bool, date, time)  # what a TOML value in `set` may be


ACTIONS = ("delete", "anonymize", "delete_unreferenced")


@dataclass(frozen=True)
class Mask:
    """A `set` value that masks the stored one instead of replacing it with a constant:
    `{ hash = true }` (a keyed pseudonym of it) or `{ random = true }` (masks.py makes both)."""

    how: Literal["hash", "random"]


@dataclass(frozen=True)
class Reference:
    """What a `where` column equals: an identifier type's values (compared after the type's fold,
    unless the column is stored folded already: `exact`), or a listed table's column."""

    identifier: str = ""
    table: str = ""
    column: str = ""
    fold: Fold = ()
    exact: bool = False


@dataclass(frozen=True)
class Lookup:
    """A resolver written as names: `SELECT select FROM table WHERE column = :value`, the column
    folded as the value's identifier type is (unless `exact`)."""

    table: str
    column: str
    select: str
    fold: Fold = ()
    exact: bool = False


@dataclass(frozen=True)
class SqlTable:
    """One `[[systems.tables]]` entry: which rows are the subject's and what becomes of them
    (`delete_unreferenced`: deleted unless a row that stays refers to them, else anonymized)."""

    name: str
    where: tuple[tuple[str, Reference], ...]
    action: Literal["delete", "anonymize", "delete_unreferenced"]
    assign: tuple[tuple[str, Any], ...] = ()  # the `set` table; None is SQL NULL, a Mask masks
    retain: Retention | None = None  # kept by law until a date (or for good): matched, counted, not touched

    @property
    def literals(self) -> tuple[tuple[str, Any], ...]:
        """The `set` columns given a value (or NULL)."""
        return tuple((column, value) for column, value in self.assign if not isinstance(value, Mask))

    @property
    def masks(self) -> tuple[tuple[str, Mask], ...]:
        """The `set` columns masked: hashed or randomized, row by row."""
        return tuple((column, value) for column, value in self.assign if isinstance(value, Mask))


@dataclass(frozen=True)
class SqlConfig(SystemConfig):
    """A SQL database and the tables that hold the subject's rows."""

    url: str
    tables: tuple[SqlTable, ...]

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "sql"`."""
        reader.only("name", "kind", "url", "tables")
        name = reader.text("name")
        url = reader.text("url")
        try:
            sa.make_url(url)
        except sa_exc.ArgumentError as exc:  # the URL may hold a password: never quote it
            raise reader.error("url", "not a SQLAlchemy URL") from exc
        raw_tables = reader.require("tables", list)
        if not raw_tables:
            raise reader.error("tables", "lists no table")
        listed = {raw.get("name") for raw in raw_tables if isinstance(raw, Mapping)}
        tables = tuple(_read_table(reader.child("tables", t, i), listed) for i, t in enumerate(raw_tables))
        try:
            reference_order(tables)
        except graphlib.CycleError as exc:
            cycle = " -> ".join(tables[i].name for i in exc.args[1])
            raise reader.error("tables", f"reference cycle between tables: {cycle}") from exc
        return cls(name=name, kind="sql", url=url, tables=tables)

    @property
    def identifier_types(self) -> frozenset[str]:
        """Every identifier type some `where` refers to."""
        return frozenset(ref.identifier for t in self.tables for _, ref in t.where if ref.identifier)


def _read_table(reader: ConfigReader, listed: set[Any]) -> SqlTable:
    """One entry of `tables`."""
    reader.only("name", "where", "action", "set", "retain", "match")
    name = reader.text("name")
    if not TABLE_NAME.fullmatch(name):
        raise reader.error("name", f"{name!r} is not a plain name (letters, digits, _; or schema.table)")
    raw_where = reader.require("where", dict)
    if not raw_where:
        raise reader.error("where", "names no column: it would match every row")
    exact = reader.exact_columns(raw_where)
    where = tuple(
        (_column(reader, "where", column), _reference(reader, f"where.{column}", ref, listed, column in exact))
        for column, ref in raw_where.items()
    )
    action, retain = reader.text("action"), reader.retention()
    if action == "delete":
        if "set" in reader.raw:
            raise reader.error("set", "only an anonymize or delete_unreferenced action sets columns")
        return SqlTable(name, where, "delete", retain=retain)
    if action not in ACTIONS:
        raise reader.error("action", f"must be 'delete', 'anonymize' or 'delete_unreferenced', not {action!r}")
    raw_set = reader.require("set", dict)  # delete_unreferenced: what becomes of a row kept because referred to
    if not raw_set:
        raise reader.error("set", "sets no column")
    assign = tuple((_column(reader, "set", col), _value(reader, col, v)) for col, v in raw_set.items())
    return SqlTable(name, where, action, assign, retain)  # type: ignore[arg-type]  # checked: one of ACTIONS


def _column(reader: ConfigReader, key: str, column: str) -> str:
    """A column name that is a plain identifier."""
    if not NAME.fullmatch(column):
        raise reader.error(key, f"{column!r} is not a plain column name (letters, digits, _)")
    return column


def _reference(reader: ConfigReader, key: str, ref: Any, listed: set[Any], exact: bool) -> Reference:
    """An identifier type (with its fold), or `table.column` of a table listed in the same system."""
    if isinstance(ref, str) and ref not in reader.identifier_types and "." in ref:
        table, _, column = ref.rpartition(".")
        if not TABLE_NAME.fullmatch(table) or not NAME.fullmatch(column):
            raise reader.error(key, f"{ref!r} is neither an identifier type nor table.column")
        if table not in listed:
            raise reader.error(key, f"reference to table {table!r} which is not listed")
        return Reference(table=table, column=column)
    identifier = reader.identifier(key, ref)
    return Reference(identifier=identifier, fold=reader.fold(identifier), exact=exact)


def _value(reader: ConfigReader, column: str, value: Any) -> Any:
    """A value of `set`: "null" is SQL NULL, `{ hash = true }` or `{ random = true }` a Mask, any other
    TOML scalar is itself. Whether the column's type takes a mask is known once it is reflected."""
    if value == "null":
        return None
    if isinstance(value, Mapping):
        mask = reader.child(f"set.{column}", value)
        mask.only("hash", "random")
        if len(value) != 1:
            raise reader.error(f"set.{column}", "one of the two: { hash = true } or { random = true }")
        how, flag = next(iter(value.items()))
        if flag is not True:
            raise mask.error(how, f"must be true, not {flag!r}")
        return Mask(how)
    if not isinstance(value, SCALARS):
        raise reader.error(f"set.{column}", 'must be a string, number, boolean, date, "null", '
                                            "{ hash = true } or { random = true }")
    return value


def reference_order(tables: tuple[SqlTable, ...]) -> tuple[int, ...]:
    """Entry indices such that a table comes after every table its `where` refers to."""
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for i, entry in enumerate(tables):
        sorter.add(i, *(j for _, ref in entry.where for j, t in enumerate(tables) if t.name == ref.table))
    return tuple(sorter.static_order())
