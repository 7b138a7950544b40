"""The subject a connector erases: one person's identifiers, each type's validated, normalized values,
and how an integer written plainly is told from one that is not."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Subject:
    """One person's identifiers: each type maps to validated, normalized values."""

    identifiers: Mapping[str, tuple[str, ...]]

    def values(self, id_type: str) -> tuple[str, ...]:
        """The values of one identifier type, or () when the request has none."""
        return self.identifiers.get(id_type, ())

    def all_values(self) -> frozenset[str]:
        """Every value of every type, for redaction."""
        return frozenset(v for vs in self.identifiers.values() for v in vs)

    def to_json(self) -> dict[str, list[str]]:
        """The JSON form stored with the request."""
        return {k: list(v) for k, v in sorted(self.identifiers.items()) if v}

    @classmethod
    def from_json(cls, data: Mapping[str, Iterable[str]]) -> Subject:
        """The inverse of to_json."""
        return cls({k: tuple(sorted(set(v))) for k, v in data.items() if v})



INTEGER = re.compile(r"0|-?[1-9][0-9]{0,18}")  # as written canonically: "042" and "-0" are not 42 and 0


def as_integer(value: str) -> int | None:
    """The value as an integer if it is one written plainly ("42", not "42.0", " 42" or "042": an
    integer column cannot tell "042" from 42, and a match must never take more than was asked)."""
    return int(value) if INTEGER.fullmatch(value) else None
