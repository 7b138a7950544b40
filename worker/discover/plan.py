"""From one database's tables to its draft: the identity tables (named by a hint, or the table of
people most others refer to), the tables the subject owns (walking links out from them: rows that
refer to the subject's rows, deleted), the tables holding an identifier type directly (deleted, when
sampled values show they hold the identity table's people), the tables the subject's rows refer to and
others may share (anonymized), and the risk list: what looks personal that the draft does not erase."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from connectors.sql.config import NAME, TABLE_NAME
from worker.discover.classify import Finding, classify, percent, personal, snake
from worker.discover.identifiers import IdType
from worker.discover.model import Column, Link, Table

# (table, column, other, other_column) -> (found, sampled), or None if they cannot be compared
Overlap = Callable[[str, str, str, str], tuple[int, int] | None]
PEOPLE = {"user", "users", "customer", "customers", "account", "accounts", "member", "members", "person",
          "people", "persons", "profile", "profiles", "client", "clients", "patient", "patients", "subscriber",
          "subscribers", "app_user", "app_users"}
BLANKS: dict[str, Any] = {"text": "", "integer": 0, "number": 0, "boolean": False, "date": date(1970, 1, 1),
                          "datetime": datetime(1970, 1, 1)}
NOT_PLAIN = "a table or column name that is not plain (letters, digits, _): the sql kind cannot name it"
UNREACHED = "no link leads to it from the identity tables, and it holds no identifier type"


@dataclass(frozen=True)
class Entry:
    """One `[[systems.tables]]` entry of the draft, with the comment lines that say why it is there."""

    table: str
    where: tuple[tuple[str, str], ...]
    action: str
    assign: tuple[tuple[str, Any], ...] = ()
    why: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolve:
    """A resolver of the draft: `SELECT select FROM table WHERE column = :source` gives `target` values."""

    source: str
    target: str
    table: str
    column: str
    select: str


@dataclass(frozen=True)
class Risk:
    """A column that looks personal and that the draft does not erase, and why."""

    place: str
    category: str
    evidence: str
    why: str


@dataclass
class Plan:
    """One database's part of the draft."""

    entries: list[Entry] = field(default_factory=list)
    resolvers: list[Resolve] = field(default_factory=list)
    risks: list[Risk] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    primary_types: set[str] = field(default_factory=set)


class Planner:
    """Decides, table by table, what the draft does with one database."""

    def __init__(self, tables: dict[str, Table], types: list[IdType], overlap: Overlap) -> None:
        self.tables, self.types, self.overlap = tables, types, overlap
        self.findings = {name: personal(classify(table, types)) for name, table in tables.items()}
        self.typed = {name: {c: f.types for c, f in found.items() if f.types} for name, found in self.findings.items()}
        self.role: dict[str, str] = {}  # table -> identity | owned | direct | shared | excluded
        self.excluded: dict[str, str] = {}
        self.described: set[str] = set()
        self.owner_link: dict[str, Link] = {}
        self.plan = Plan()
        for name, table in tables.items():
            if not TABLE_NAME.fullmatch(name) or not all(NAME.fullmatch(column) for column in table.columns):
                self.role[name], self.excluded[name] = "excluded", NOT_PLAIN

    def run(self) -> Plan:
        """The whole plan: identities, the owned walk, direct tables, shared parents, the risk list."""
        queue = deque(self._identities())
        self._walk(queue)
        for name in sorted(self.tables):
            if name not in self.role and self.typed[name] and self._direct(name):
                self._walk(deque([name]))
        for name in dict.fromkeys(entry.table for entry in self.plan.entries):
            self._parents(name)
        self._risks()
        return self.plan

    def _identities(self) -> list[str]:
        """The identity tables: those a table.column hint names, else the best table of people."""
        hinted = [t for kind in self.types for t, c in kind.table_hints()
                  if t in self.tables and c in self.tables[t].columns and self.role.get(t) != "excluded"]
        chosen = list(dict.fromkeys(hinted)) or self._best_table_of_people()
        for name in chosen:
            self._identity(name)
        return chosen

    def _best_table_of_people(self) -> list[str]:
        def score(table: Table) -> tuple[int, str]:
            named = any(f.category == "name" for f in self.findings[table.name].values())
            return 2 * self._referrers(table.name) + 3 * (snake(table.name) in PEOPLE) + named, table.name

        candidates = [t for t in self.tables.values() if t.single_key and self.typed[t.name]]
        return [max(candidates, key=score).name] if candidates else []

    def _referrers(self, name: str) -> int:
        return sum(1 for t in self.tables.values() if t.name != name for link in t.links if link.table == name)

    def _identity(self, name: str) -> None:
        table, typed = self.tables[name], self.typed[name]
        key = table.single_key
        keyed = [k.name for k in self.types if k.keyed]
        why = [f"{name}: an identity table, the people a request names ({self._referrers(name)} other tables "
               f"refer to it)"]
        if key and key not in typed and keyed:
            typed[key] = (keyed[0],)
            why.append(f"  {key} (its key, holds {keyed[0]})")
            drafted = next(k for k in self.types if k.name == keyed[0])
            if table.columns[key].kind != "integer" and drafted.compiled.fullmatch("42"):
                why.append(f"  check: {key} is {table.columns[key].kind}, and {drafted.name}'s pattern is "
                           f"{drafted.pattern}: change the pattern to fit the keys")
        self.role[name] = "identity"
        why += self._evidence(name)
        primary = typed.get(key or "", ())
        if primary:
            self.plan.primary_types.add(primary[0])
            self._add(Entry(name, ((key or "", primary[0]),), "delete", why=tuple(why)))
            for column, kinds in typed.items():
                for kind in kinds:
                    if column != key and kind != primary[0]:
                        self.plan.resolvers += [Resolve(kind, primary[0], name, column, key or ""),
                                                Resolve(primary[0], kind, name, key or "", column)]
            return
        for i, (column, kinds) in enumerate(typed.items()):
            self._add(Entry(name, ((column, kinds[0]),), "delete", why=tuple(why) if i == 0 else ()))

    def _walk(self, queue: deque[str]) -> None:
        """Tables whose rows refer to the subject's rows are the subject's too: deleted, breadth first."""
        while queue:
            parent = queue.popleft()
            for child in sorted(self.tables.values(), key=lambda t: t.name):
                links = [link for link in child.links if link.table == parent]
                if child.name in self.role or child.name == parent or not links:
                    continue
                self.role[child.name] = "owned"
                self.owner_link[child.name] = links[0]
                why = [f"{child.name}: the subject's own rows: {links[0].describe(child.name)}"]
                why += [f"also {link.describe(child.name)}: not followed (one path decides whose a row is)"
                        for link in links[1:]]
                self._add(Entry(child.name, ((links[0].column, f"{parent}.{links[0].target}"),), "delete",
                                why=tuple(why + self._evidence(child.name))))
                for column, kinds in self.typed[child.name].items():
                    self._add(Entry(child.name, ((column, kinds[0]),), "delete",
                                    why=(f"{child.name}.{column} holds {kinds[0]}: rows found by it too",)))
                queue.append(child.name)

    def _direct(self, name: str) -> bool:
        """A table holding an identifier type, kept if its sampled values are found in an identity table
        (or nothing can be compared); else excluded, as another population's."""
        compared: list[tuple[int, int, str]] = []
        for column, kinds in self.typed[name].items():
            for identity, other in self._identity_columns(kinds[0], self.tables[name].columns[column]):
                counted = self.overlap(name, column, identity, other)
                if counted is None:
                    continue
                found, sampled = counted
                compared.append((found, sampled, f"{percent(found, sampled)} of {sampled} sampled {name}.{column} "
                                                 f"values are found in {identity}.{other}"))
        if compared and not any(found for found, _, _ in compared) and any(sampled for _, sampled, _ in compared):
            self.role[name] = "excluded"
            self.excluded[name] = "; ".join(text for _, _, text in compared) + ": another population (staff, " \
                                  "admins, test accounts?), or the identity table is the wrong one"
            return False
        self.role[name] = "direct"
        reason = "; ".join(text for found, _, text in compared if found) or (
            "its rows cannot be compared with an identity table's (empty, or no identity table holds the type)")
        for i, (column, kinds) in enumerate(self.typed[name].items()):
            head = [f"{name}: holds {kinds[0]} in {column}: {reason}", *self._evidence(name)] if i == 0 else []
            self._add(Entry(name, ((column, kinds[0]),), "delete", why=tuple(head)))
        return True

    def _identity_columns(self, kind: str, column: Column) -> list[tuple[str, str]]:
        return [(name, c) for name, role in self.role.items() if role == "identity"
                for c, kinds in self.typed[name].items()
                if kind in kinds and self.tables[name].columns[c].kind == column.kind]

    def _parents(self, name: str) -> None:
        """Tables the subject's rows refer to: anonymized if they hold personal data, for others may share them."""
        for link in self.tables[name].links:
            parent, role = link.table, self.role.get(link.table)
            if parent == name or role in ("identity", "owned", "direct"):
                continue
            if role == "excluded":
                self.plan.notes.append(f"{link.describe(name)}: not followed, {parent} is on the risk list")
                continue
            assign, left = self._blanks(parent)
            if not assign:
                if not left:
                    self.plan.notes.append(f"{link.describe(name)}: {parent} holds no personal data")
                continue
            self.role[parent] = "shared"
            why = (f"{parent}: rows the subject's rows refer to, which others may share: anonymized, kept; "
                   f"{link.describe(name)}", *self._evidence(parent))
            self._add(Entry(parent, ((link.target, f"{name}.{link.column}"),), "anonymize", assign, why))

    def _blanks(self, name: str) -> tuple[tuple[tuple[str, Any], ...], list[str]]:
        """The `set` of a shared table's personal columns, and the personal columns no value can be set in."""
        table, assign, left = self.tables[name], list[tuple[str, Any]](), list[str]()
        referred = {link.target for t in self.tables.values() for link in t.links if link.table == name}
        for column in self.findings[name]:
            spec = table.columns[column]
            if column in table.primary_key or table.link(column) or column in referred:
                continue
            if spec.nullable:
                assign.append((column, "null"))
            elif not spec.unique and spec.kind in BLANKS:
                assign.append((column, BLANKS[spec.kind]))
            else:
                left.append(column)
        return tuple(assign), left

    def _risks(self) -> None:
        for name, found in sorted(self.findings.items()):
            role = self.role.get(name)
            left = self._blanks(name)[1] if role == "shared" else []
            why = self.excluded.get(name, UNREACHED)
            for column, finding in found.items():
                if role in (None, "excluded"):
                    self.plan.risks.append(Risk(f"{name}.{column}", finding.category, finding.evidence, why))
                elif column in left:
                    self.plan.risks.append(Risk(f"{name}.{column}", finding.category, finding.evidence,
                                                "NOT NULL and unique (or of no blank kind): no one value can be set"))
            self._blocking(name)
            for target, composite in self.tables[name].unfollowed:
                if role or self.role.get(target) in ("identity", "owned", "direct"):
                    self.plan.notes.append(f"{name}: composite foreign key {composite} not followed")

    def _blocking(self, name: str) -> None:
        """Declared keys into deleted rows that the walk did not follow: a row of another person that refers
        to one of the subject's makes the delete fail (or, ON DELETE CASCADE, takes that row too)."""
        for link in self.tables[name].links:
            deleted = self.role.get(link.table) in ("identity", "owned", "direct")
            if link.declared and deleted and self.owner_link.get(name) != link:
                rule = f"ON DELETE {link.on_delete}" if link.on_delete else "no ON DELETE rule"
                self.plan.notes.append(f"{link.describe(name)}, {rule}: a row that is not the subject's but "
                                       f"refers to a deleted {link.table} row makes the erasure fail, or is changed "
                                       "by the rule")

    def _evidence(self, name: str) -> list[str]:
        """What makes a table's columns personal, said once per table."""
        if name in self.described:
            return []
        self.described.add(name)
        return [f"  {column} ({_show(f)})" for column, f in self.findings[name].items()]

    def _add(self, entry: Entry) -> None:
        self.plan.entries.append(entry)


def _show(finding: Finding) -> str:
    holds = f", holds {', '.join(finding.types)}" if finding.types else ""
    return f"{finding.category}{holds}{': ' + finding.evidence if finding.evidence else ''}"
