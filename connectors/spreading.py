"""A kind whose pass over many files may be spread over workers in parts (worker/engine/parts.py runs the
parts, part_passes.py settles the pass): the snapshot kind, or a plugin's kind with the same five methods.
The engine reads such a connector through `Splits`, so its calls are checked, and never spreads a kind
without them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from connectors.base import Connector, Journal, Outcome, SnapshotHit, Subject


@dataclass(frozen=True)
class Rewritten:
    """What rewriting files did: per file, rows removed and older versions deleted per subject (in the
    order of the subjects given); and the files left for lacking a where column."""

    removed: dict[str, list[int]]
    purged: dict[str, list[int]]
    skipped: list[dict[str, Any]]


@runtime_checkable
class Splits(Protocol):
    """A connector whose pass is done file by file: split into parts, each part's files located, erased
    and verified on their own, and the subjects' outcomes made from what every part did."""

    def split(self, most_bytes: int) -> list[list[str]]:
        """The data files in parts of up to `most_bytes` each; fewer than two: not worth spreading."""

    def locate_files(self, subjects: Sequence[Subject], files: Sequence[str]) -> list[tuple[SnapshotHit, ...]]:
        """Each subject's snapshot hits among those of `files` still there, changing nothing."""

    def erase_files(self, subjects: Sequence[Subject], files: Sequence[str],
                    journal: Journal | None = None) -> Rewritten:
        """The subjects' rows removed from those of `files` still there, `journal` told before each swap."""

    def verify_files(self, subjects: Sequence[Subject], files: Sequence[str]) -> list[int]:
        """Each subject's rows still in those of `files` still there."""

    def outcomes(self, subjects: int, done: Rewritten) -> list[Outcome]:
        """Each subject's outcome from what the parts did, put together."""


def splits(connector: Connector) -> Splits | None:
    """The connector as one whose passes spread over parts, or None."""
    return connector if isinstance(connector, Splits) else None
