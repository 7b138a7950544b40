"""What discovery knows of a source, whatever it is (a database's tables, a snapshot location's
files): its columns and their kinds, keys and links, and counts tallied from sampled values.
Sampled values themselves are never kept: only how many there were and how many matched."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.discover.identifiers import IdType

KINDS = ("text", "integer", "number", "date", "datetime", "boolean", "uuid", "other")
SAMPLE_ROWS = 1000  # the most rows sampled from one table or snapshot


@dataclass(frozen=True)
class Column:
    """One column: its name, its kind (one of KINDS), whether it may be NULL and whether it is unique."""

    name: str
    kind: str
    nullable: bool = True
    unique: bool = False


@dataclass(frozen=True)
class Link:
    """A column that refers to another table's column: declared by a foreign key, or inferred from its name."""

    column: str
    table: str
    target: str
    declared: bool
    on_delete: str = ""  # a declared key's ON DELETE rule, if it says one

    def describe(self, source: str) -> str:
        """`orders.customer_id -> customer.id (foreign key)`."""
        how = "foreign key" if self.declared else "inferred from the column's name"
        return f"{source}.{self.column} -> {self.table}.{self.target} ({how})"


@dataclass(frozen=True)
class Tally:
    """What sampling one column found: non-null values, and how many matched each identifier type."""

    values: int = 0
    matches: tuple[tuple[str, int], ...] = ()

    def share(self, id_type: str) -> float:
        """The fraction of sampled values that match the type (0 when none was sampled)."""
        return dict(self.matches).get(id_type, 0) / self.values if self.values else 0.0


def tally(values: Iterable[object], types: Iterable[IdType]) -> Tally:
    """Count the non-null values and those each type's pattern takes; the values are not kept."""
    kinds, count, hits = list(types), 0, dict[str, int]()
    for value in values:
        if value is None:
            continue
        count += 1
        if isinstance(value, str):
            for kind in kinds:
                if kind.matches(value):
                    hits[kind.name] = hits.get(kind.name, 0) + 1
    return Tally(count, tuple(sorted(hits.items())))


@dataclass
class Table:
    """A table (or a snapshot location's rows): columns, primary key, links, and what sampling found."""

    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()
    links: list[Link] = field(default_factory=list)
    unfollowed: list[tuple[str, str]] = field(default_factory=list)  # composite foreign keys: (target, described)
    sampled: int = 0  # rows sampled
    tallies: dict[str, Tally] = field(default_factory=dict)

    def link(self, column: str) -> Link | None:
        """The link a column makes, if any."""
        return next((link for link in self.links if link.column == column), None)

    @property
    def single_key(self) -> str | None:
        """The primary key's column, when it has exactly one."""
        return self.primary_key[0] if len(self.primary_key) == 1 else None


@dataclass
class Database:
    """One database: the name its system gets, its URL without credentials, and its tables."""

    name: str
    url: str
    dialect: str
    had_password: bool
    tables: dict[str, Table]
