"""The `vector` kind: embeddings in LanceDB or Qdrant. Erasing a subject deletes the rows (points)
whose where fields hold their values, then has the store drop them from disk (LanceDB: compaction
and cleanup of old versions), and counts again: 0 after a good erase.

A vector table is training data (models and indexes are built from it), so each erase that found
rows reports the table as a snapshot hit, `SYSTEM:TABLE`, for lineage to flag what was built from
it. With `cleanup_older_than` above 0, LanceDB's older versions keep the deleted rows that long:
the outcome says so, as an exemption that ends then, and the erase that follows removes them.
Only the backend a system names is imported (lance.py: lancedb; qdrant.py: qdrant_client)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from connectors.base import (
    Checked,
    Connector,
    Journal,
    Outcome,
    Part,
    Patterns,
    Preview,
    SnapshotHit,
    Subject,
    one_at_a_time,
    retry_blips,
)
from connectors.errors import ConnectorError, PermanentError
from connectors.snapshot.scan import WhereBatch
from connectors.vector import preview, probe
from connectors.vector.config import VectorConfig

JOURNAL_KEY = "rows"  # what erase_many tells the journal its deletes as
RECHECK_MARGIN = timedelta(minutes=5)  # past the retention, so that cleanup finds the versions old enough


class Backend(Protocol):
    """One store's table or collection, reached by a subject's where values."""

    label: str

    def count(self, subject: Subject) -> int:
        """How many of the subject's rows it holds now."""

    def delete(self, subject: Subject) -> int:
        """Delete the subject's rows; how many went."""

    def where_values(self) -> Iterator[WhereBatch]:
        """Every row's where values as compared, batch by batch."""

    def compact(self) -> dict[str, Any]:
        """Have the store drop deleted rows from disk; evidence of what it did."""

    def close(self) -> None:
        """Release the client."""


class VectorConnector(Connector):
    """Deletes a subject's vectors from a LanceDB table or a Qdrant collection, and from disk."""

    kind = "vector"
    config_class = VectorConfig
    config: VectorConfig

    def __init__(self, config: VectorConfig) -> None:
        super().__init__(config)
        self._backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        """The store, its library imported on first use: each is an optional extra."""
        if self._backend is None:
            try:
                if self.config.backend == "lancedb":
                    from connectors.vector.lance import LanceBackend  # lancedb: the optional [vector] extra
                    self._backend = LanceBackend(self.config)
                else:
                    from connectors.vector.qdrant import QdrantBackend  # qdrant-client: the optional [vector] extra
                    self._backend = QdrantBackend(self.config)
            except ImportError as exc:
                package = "lancedb" if self.config.backend == "lancedb" else "qdrant-client"
                raise PermanentError(f"vector {self.config.name}: backend {self.config.backend} "
                                     f"needs the {package} package (the [vector] extra)") from exc
        return self._backend

    def erase(self, subject: Subject) -> Outcome:
        """Delete the subject's rows, then have the store drop them from disk."""
        return retry_blips(self._erase)(subject)

    def erase_many(self, subjects: Sequence[Subject],
                   journal: Journal | None = None) -> Sequence[Outcome | ConnectorError]:
        """erase() for each subject in turn. With a journal, each subject's rows, counted just before, are told
        before the delete, so a worker killed after it and before the store's record loses no count."""
        return [retry_blips(self._erase)(subject, tell) for subject, tell in one_at_a_time(subjects, journal)]

    def with_earlier(self, outcome: Outcome, earlier: Mapping[str, int]) -> Outcome:
        """The rows an earlier attempt deleted, counted; on LanceDB with `cleanup_older_than`, its older
        versions may keep them still: an exemption until then (from now, the latest it can end)."""
        merged = super().with_earlier(outcome, earlier)
        return merged if merged.exempt_reason else self._kept(merged)

    def verify(self, subject: Subject) -> int:
        """How many of the subject's rows are left."""
        return retry_blips(self.backend.count)(subject)

    def locate(self, subject: Subject) -> tuple[SnapshotHit, ...]:
        """The table as a snapshot holding the subject's rows, found before anything is deleted."""
        return self._hits(retry_blips(self.backend.count)(subject))

    def where_values(self) -> Iterator[WhereBatch]:
        """Every row's where values as compared, batch by batch (the guard reads the table with them)."""
        return self.backend.where_values()

    def close(self) -> None:
        """Release the store's client."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _erase(self, subject: Subject, tell: Callable[[str, int], None] | None = None) -> Outcome:
        if tell is not None and (found := self.backend.count(subject)):
            tell(JOURNAL_KEY, found)
        removed = self.backend.delete(subject)
        cleanup = self.backend.compact()
        c = self.config
        evidence = {"backend": c.backend, "table" if c.backend == "lancedb" else "collection": c.table,
                    "where": dict(c.where), "rows_removed": removed} | cleanup
        if c.backend == "lancedb":
            evidence["cleanup_older_than_seconds"] = c.cleanup_older_than
        return self._kept(Outcome(removed, evidence, self._hits(removed)))

    def _kept(self, outcome: Outcome) -> Outcome:
        """The outcome, exempt until LanceDB's cleanup may drop the older versions that keep its rows."""
        c, removed = self.config, outcome.items_erased
        if not removed or not c.cleanup_older_than or c.backend != "lancedb":
            return outcome
        until = datetime.now(UTC) + timedelta(seconds=c.cleanup_older_than) + RECHECK_MARGIN
        reason = (f"older versions of LanceDB table {c.table!r} keep the {removed} rows removed until "
                  f"{until:%Y-%m-%dT%H:%M:%SZ} (cleanup_older_than); the erase then removes them")
        return replace(outcome, exempt_reason=reason, recheck_at=until)

    def _hits(self, rows: int) -> tuple[SnapshotHit, ...]:
        return (SnapshotHit(f"{self.config.name}:{self.config.table}", rows),) if rows else ()

    def preview(self, subject: Subject) -> Preview:
        """The rows erase() would delete, counted as verify counts them, with the table as its hit (preview.py)."""
        return preview.look(self, subject)

    def export(self, subject: Subject, *, contents: bool = False) -> Iterator[Part]:
        """A note: embeddings are counted, not exported (preview.py)."""
        return preview.read(self, subject)

    def check(self, patterns: Patterns | None = None) -> Checked:
        """The table or collection opens with its where fields, read-only (probe.py)."""
        return probe.check(self, patterns)
