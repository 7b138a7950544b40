"""The vector kind's read-only probe (`erasure check`): the table (LanceDB) or collection (Qdrant) opens
and its where fields are there, as the backend checks them before any erasure; a LanceDB column whose
type cannot hold every value its identifier type allows is a note. Nothing is written or optimized."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from connectors.base import Checked, Patterns
from connectors.checks import Found, misfit, misfit_note
from connectors.snapshot.match import typed
from connectors.vector.config import VectorConfig


class Vector(Protocol):
    """The vector connector as read here (connector.py imports this module, never the reverse)."""

    config: VectorConfig

    @property
    def backend(self) -> Any:
        """The store's table or collection, opened and checked."""


def check(connector: Vector, patterns: Patterns | None) -> Checked:
    """Open the table or collection as an erasure would, with its checks."""
    config, found = connector.config, Found()
    folder = config.path if config.backend == "qdrant" else None if config.uri.startswith("s3://") else config.uri
    if folder and not Path(folder).is_dir():  # opening would make it (and a lock file): say so instead
        return Checked((f"the folder {folder!r} does not exist",))
    backend = connector.backend
    if config.backend == "lancedb":
        schema = backend.table.schema  # opened and checked (lance.py)
        for column, id_type in config.where:
            kind = schema.field(column).type
            example = misfit((patterns or {}).get(id_type), _holds(kind))
            if example is not None:
                found.notes.append(misfit_note(f"column {column!r}", str(kind), id_type, example))
        found.notes.append("the table opens and has every where column")
    else:
        backend.client  # noqa: B018 - opened and checked (qdrant.py)
        found.notes.append("the collection is there, and each where field is in some point (or it is empty)")
    return found.checked()


def _holds(kind: Any) -> Callable[[str], bool]:
    """Whether a column of this Arrow type can hold a value as written (as a snapshot's would)."""
    return lambda value: typed(value, kind) is not None
