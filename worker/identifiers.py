"""Identifier types and resolvers, as `erasure.toml` declares them: what a request may carry (each type's
pattern and normalization, and how a submitted value is checked and folded) and how values of one type are
derived from another with a query on a sql system. worker/config.py reads the rest of the file."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.base import ConfigReader, SystemConfig
from connectors.normalize import Fold, describe, fold_text, parse_steps
from connectors.sql.config import NAME as COLUMN_NAME
from connectors.sql.config import TABLE_NAME, Lookup
from worker.errors import InputError

MAX_VALUE_LENGTH = 1024
PLAIN_QUERY = re.compile(  # a resolver query erasure can write itself, folding the stored side
    r"\s*SELECT\s+(?P<select>[A-Za-z_][A-Za-z0-9_]*)\s+FROM\s+(?P<table>(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*)"
    r"\s+WHERE\s+(?P<column>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*:(?P<param>[A-Za-z_][A-Za-z0-9_]*)\s*;?\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class IdentifierType:
    """One identifier type a request may carry, with its pattern and normalization (its fold: NFC,
    then the steps; connectors compare the stored side after the same fold)."""

    name: str
    pattern: re.Pattern[str]
    fold: Fold = ()

    @property
    def normalize(self) -> str:
        """The steps as the config writes them ("none", "lower", ["trim", "lower"])."""
        return describe(self.fold)

    def clean(self, raw: Any) -> str:
        """The normalized value, or InputError; the message never repeats the value."""
        if not isinstance(raw, str):
            raise InputError(f"{self.name}: a value must be a string, got {type(raw).__name__}")
        if raw == "":
            raise InputError(f"{self.name}: the value is empty")
        if len(raw) > MAX_VALUE_LENGTH:
            raise InputError(f"{self.name}: the value is longer than {MAX_VALUE_LENGTH} characters")
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in raw):
            raise InputError(f"{self.name}: the value contains control characters")
        value = fold_text(raw, self.fold)
        if not value:  # "   " with trim: an empty value would match every empty column
            raise InputError(f"{self.name}: the value is empty once normalized")
        if len(value) > MAX_VALUE_LENGTH:  # lower-casing can lengthen a value ("İ" becomes two)
            raise InputError(f"{self.name}: the value is longer than {MAX_VALUE_LENGTH} characters")
        if not self.pattern.fullmatch(value):
            raise InputError(f"{self.name}: the value does not match the pattern {self.pattern.pattern}")
        return value


@dataclass(frozen=True)
class Resolver:
    """Derives values of one identifier type from another with a query on a sql system."""

    system: str
    from_type: str
    to_type: str
    query: str | Lookup  # the config's SQL, or table, column and select that erasure writes the SQL for


def read_identifiers(top: ConfigReader) -> dict[str, IdentifierType]:
    """The [identifiers] table: at least one type, each a plain name with its pattern and normalization."""
    table = top.child("identifiers", top.raw.get("identifiers", {}))
    if not table.raw:
        raise top.error("identifiers", "declare at least one identifier type")
    found = {}
    for name, spec in table.raw.items():
        if not name.isidentifier():
            raise table.error(name, "an identifier type is a plain name like user_id")
        one = table.child(name, spec)
        one.only("pattern", "normalize")
        try:
            pattern = re.compile(one.text("pattern"))
        except re.error as exc:
            raise one.error("pattern", f"not a valid regular expression: {exc}") from None
        try:
            fold = parse_steps(one.raw.get("normalize", "none"))
        except ValueError as exc:
            raise one.error("normalize", str(exc)) from None
        found[name] = IdentifierType(name, pattern, fold)
    return found


def read_resolvers(top: ConfigReader, folds: Mapping[str, Fold],
                   systems: tuple[SystemConfig, ...]) -> tuple[Resolver, ...]:
    """The [[resolvers]]: each on a sql system of the config, from one declared type to another."""
    found = []
    kinds = {s.name: s.kind for s in systems}
    for index, raw in enumerate(top.optional("resolvers", list, [])):
        one = top.child("resolvers", raw, index)
        one.folds = folds
        one.only("system", "from", "to", "query", "table", "column", "select", "match")
        system = one.text("system")
        if kinds.get(system) != "sql":
            raise one.error("system", f"{system!r} is not a sql system of this config")
        from_type, to_type = one.identifier("from", one.raw.get("from")), one.identifier("to", one.raw.get("to"))
        match = one.optional("match", str, "normalized")
        if match not in ("exact", "normalized"):
            raise one.error("match", f'must be "exact" or "normalized", not {match!r}')
        exact = match == "exact"
        if "query" in one.raw:
            query: str | Lookup = _resolver_query(one, from_type, exact)
        else:
            names = {key: one.text(key) for key in ("table", "column", "select")}
            if not TABLE_NAME.fullmatch(names["table"]):
                raise one.error("table", f"{names['table']!r} is not a plain name (or schema.table)")
            for key in ("column", "select"):
                if not COLUMN_NAME.fullmatch(names[key]):
                    raise one.error(key, f"{names[key]!r} is not a plain column name (letters, digits, _)")
            query = Lookup(names["table"], names["column"], names["select"], one.fold(from_type), exact)
        found.append(Resolver(system, from_type, to_type, query))
    return tuple(found)


def _resolver_query(one: ConfigReader, from_type: str, exact: bool) -> str | Lookup:
    """A resolver's own query. The plain shape `SELECT a FROM t WHERE b = :type` becomes a lookup, whose
    SQL erasure writes with the stored side folded; any other query must bind the value and fold the
    stored side itself (a query cannot be rewritten), unless `match = "exact"`."""
    if any(key in one.raw for key in ("table", "column", "select")):
        raise one.error("query", "a resolver has a query, or table, column and select: not both")
    query = one.text("query")
    if not re.search(rf":{re.escape(from_type)}\b", query):
        raise one.error("query", f"must use the bound parameter :{from_type}")
    plain = PLAIN_QUERY.fullmatch(query)
    if plain and plain["param"] == from_type:
        return Lookup(plain["table"], plain["column"], plain["select"], one.fold(from_type), exact)
    missing = [step for step in one.fold(from_type) if not re.search(rf"\b{step}\s*\(", query, re.IGNORECASE)]
    if missing and not exact:
        # `... email = :email` compares a lowered value with the stored one byte for byte: a stored
        # "MARY@X" would match nothing, and the request would be certified erased
        raise one.error("query", f"{from_type} is normalized ({describe(one.fold(from_type))}): fold the stored "
                                 f"side the same way (e.g. {missing[-1]}(column) = :{from_type}), or write table, "
                                 f'column and select instead, or say match = "exact" if it is stored normalized')
    return query
