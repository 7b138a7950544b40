"""The identifier types a draft is built around: those an existing config declares, those named
by `--identifier TYPE=COLUMN_HINT`, or else the defaults (email, user_id); each with its pattern,
its fold, and the column hints that say where it is stored."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from connectors.normalize import Fold, fold_text
from connectors.sql.config import NAME, TABLE_NAME
from worker.errors import InputError
from worker.identifiers import IdentifierType

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
DIGITS_PATTERN = "^[0-9]{1,18}$"
DRAFTED_PATTERN = r"^\S{1,128}$"  # a type named on the command line alone: the draft says to tighten it
DEFAULTS: dict[str, tuple[str, Fold]] = {"email": (EMAIL_PATTERN, ("lower",)), "user_id": (DIGITS_PATTERN, ())}
GENERIC_PROBES = ("12345", "Example Street", "abc")  # a pattern taking these says nothing about a column's values


@dataclass(frozen=True)
class IdType:
    """One identifier type: how its values look, how they fold, and where the user says it is stored."""

    name: str
    pattern: str
    fold: Fold = ()
    hints: tuple[str, ...] = ()  # column names, or table.column
    origin: str = "default"  # default | config | --identifier
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re.compile(self.pattern))

    def matches(self, value: str) -> bool:
        """Whether a stored value, folded as a request's would be, is one of this type's values."""
        return bool(value) and self.compiled.fullmatch(fold_text(value, self.fold)) is not None

    @property
    def generic(self) -> bool:
        """Whether the pattern takes plain numbers or words: then sampled values do not say a column holds it."""
        return any(self.compiled.fullmatch(probe) for probe in GENERIC_PROBES)

    @property
    def category(self) -> str | None:
        """The column-name rule that finds this type when no hint is given (see classify.py)."""
        if "mail" in self.name:
            return "email"
        if "phone" in self.name or "mobile" in self.name:
            return "phone"
        return None

    @property
    def keyed(self) -> bool:
        """Whether the type is a person's key, found in an identity table's primary key when no hint says where."""
        return not self.hints and self.category is None and (self.name == "id" or self.name.endswith("_id"))

    def table_hints(self) -> list[tuple[str, str]]:
        """The (table, column) hints."""
        return [(hint.rpartition(".")[0], hint.rpartition(".")[2]) for hint in self.hints if "." in hint]

    def hinted(self, table: str, column: str) -> bool:
        """Whether a hint names this column (by its name alone, or as table.column)."""
        return column in self.hints or f"{table}.{column}" in self.hints


def identifier_types(given: Sequence[str], configured: Mapping[str, IdentifierType]) -> list[IdType]:
    """The types of `--identifier TYPE=COLUMN_HINT` options and of a config's [identifiers]; the defaults
    if neither names any. InputError names a malformed option."""
    hints: dict[str, list[str]] = {}
    for option in given:
        name, _, hint = option.partition("=")
        if not name.isidentifier() or not hint:
            raise InputError(f"--identifier: write TYPE=COLUMN or TYPE=TABLE.COLUMN (got {option.split('=')[0]!r}=...)")
        table, _, column = hint.rpartition(".")
        if not NAME.fullmatch(column) or (table and not TABLE_NAME.fullmatch(table)):
            raise InputError(f"--identifier {name}: {hint!r} is not a column name or table.column")
        hints.setdefault(name, []).append(hint)
    found: dict[str, IdType] = {}
    for name, kind in configured.items():
        found[name] = IdType(name, kind.pattern.pattern, kind.fold, tuple(hints.get(name, ())), "config")
    for name, names in hints.items():
        if name not in found:
            pattern, fold = DEFAULTS.get(name, (DRAFTED_PATTERN, ()))
            found[name] = IdType(name, pattern, fold, tuple(names), "--identifier")
    if not found:
        found = {name: IdType(name, pattern, fold) for name, (pattern, fold) in DEFAULTS.items()}
    return list(found.values())
