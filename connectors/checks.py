"""What the read-only probes of every kind share (`Connector.check`): the problems and notes found, and
whether a column's type can hold the values an identifier type's pattern lets through. A pattern cannot
be listed out, so it is tried on made-up values of the usual shapes (words, emails, UUIDs, dates,
numbers); the first one it takes and the column cannot hold is named, as an example, never a value of
anyone's."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.base import Checked

SHAPES = (
    "1", "42", "-1", "a", "A", "z", "abc", "ABC", "a1", "1a", "x_1", "a-b", "a.b", "1.5", "1-2", "1e3", "a b",
    "a@b", "a@b.c", "user@example.com", "0123456789abcdef0123456789abcdef",
    "01234567-89ab-cdef-0123-456789abcdef", "2024-01-31", "+4915112345678",
)


@dataclass
class Found:
    """Problems and notes, as a probe finds them."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def checked(self) -> Checked:
        """What was found, as the connector reports it (a note said twice, once)."""
        return Checked(tuple(dict.fromkeys(self.problems)), tuple(dict.fromkeys(self.notes)))


def misfit(pattern: re.Pattern[str] | None, holds: Callable[[str], bool]) -> str | None:
    """A made-up value the pattern takes that a column cannot hold (`holds` says whether it can), or None."""
    if pattern is None:
        return None
    return next((shape for shape in SHAPES if pattern.fullmatch(shape) and not holds(shape)), None)


def misfit_note(place: str, kind: str, id_type: str, example: str) -> str:
    """The note for a column that cannot hold some values of its identifier type."""
    return (f"{place} is {kind}, but {id_type}'s pattern also takes values such as {example!r}, which it cannot "
            "hold: a request carrying one finds nothing there (tighten the pattern, or check the column)")
