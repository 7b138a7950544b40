"""The vector kind's look without acting: the rows (points) of the subject's erase() would delete,
counted as verify counts them (the backend's `count`, the same match as its delete), and the table as
the snapshot hit erase() would report for lineage. Their export is not offered: the rows are embeddings
made from records another system holds, and that system's export has those records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from connectors.base import Part, Preview, SnapshotHit, Subject
from connectors.vector.config import VectorConfig

NOT_EXPORTED = "embeddings are counted but not exported: the records they were made from are exported where they live"


class Vectors(Protocol):
    """The vector connector as read here (connector.py imports this module, never the reverse)."""

    config: VectorConfig

    def locate(self, subject: Subject) -> tuple[SnapshotHit, ...]: ...


def look(vectors: Vectors, subject: Subject) -> Preview:
    """The subject's rows in the table or collection, as the snapshot `SYSTEM:TABLE` that holds them."""
    hits = vectors.locate(subject)
    rows = sum(hit.rows for hit in hits)
    table = f"{vectors.config.name}:{vectors.config.table}"
    return Preview(looked=True, items=rows, counts={"snapshots": {table: {"files": [], "rows": rows}}}, snapshots=hits)


def read(vectors: Vectors, subject: Subject) -> Iterator[Part]:
    """Nothing but a note: see the module's docstring."""
    yield Part("", note=NOT_EXPORTED)
