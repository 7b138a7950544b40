"""The `where` a snapshot's rows and a vector store's records share: which columns (or fields) say
whose a row is, which are compared as stored, and how the others' stored text is folded."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base import ConfigReader
from connectors.normalize import Fold
from connectors.snapshot.match import Key


@dataclass(frozen=True)
class Keyed:
    """The fields of a system matched as snapshots are (mixed into its config)."""

    where: tuple[tuple[str, str], ...] = ()  # (column, field or dotted path; identifier type), ANDed
    exact: frozenset[str] = frozenset()  # where columns `match` says are compared as stored
    folds: tuple[tuple[str, Fold], ...] = ()  # where columns whose type has steps; the others fold by NFC alone

    @property
    def identifier_types(self) -> frozenset[str]:
        """The identifier types named in `where`."""
        return frozenset(t for _, t in self.where)

    @property
    def keys(self) -> tuple[Key, ...]:
        """The where columns as matched: each with its identifier type and the fold of its stored text."""
        folds = dict(self.folds)
        return tuple(Key(c, t, None if c in self.exact else folds.get(c, ())) for c, t in self.where)


def folds_of(reader: ConfigReader, where: tuple[tuple[str, str], ...],
             exact: frozenset[str]) -> tuple[tuple[str, Fold], ...]:
    """The where columns not compared as stored whose identifier type folds with steps, and those steps."""
    return tuple((column, fold) for column, t in where if column not in exact and (fold := reader.fold(t)))
