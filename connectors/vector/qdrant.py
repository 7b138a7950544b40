"""A Qdrant collection (a server, or local mode on a folder) as the vector kind reaches it.

Points are found by scrolling their where payload fields (never the vectors), filtered by Qdrant
for the fields compared as stored (`MatchAny` of the values as text and as integers, typed, no
string built) and matched here, as a snapshot's JSON record is (connectors/snapshot/match.py):
a string or an integer equal to the value, after the type's fold for text; a list, a float, a
boolean or null matches nothing. They are deleted by a filter naming both their ids and the
stored values that matched, so a point rewritten meanwhile with someone else's payload stays.
What is left is counted again: 0 after a good erase."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from connectors.base import Subject, as_integer
from connectors.errors import PermanentError, TransientError, one_line
from connectors.snapshot.match import Malformed, Sought
from connectors.snapshot.paths import json_values
from connectors.snapshot.scan import Collector, WhereBatch
from connectors.vector.config import VectorConfig

PAGE = 1000  # points per scroll page
CHUNK = 500  # ids per delete
INT64 = 2**63
Match = tuple[Any, dict[str, list[Any]]]  # a point's id, and per where field the stored values that matched


class QdrantBackend:
    """One Qdrant collection: count and delete by a subject's where values."""

    def __init__(self, config: VectorConfig) -> None:
        self.config = config
        self.label = f"vector {config.name}: qdrant collection {config.table!r}"
        self._client: QdrantClient | None = None

    @property
    def client(self) -> QdrantClient:
        """The client, made on first use (the API key read from its variable then); the collection and its
        where fields are checked then."""
        if self._client is None:
            with self.errors("open"):
                c = self.config
                api_key = c.api_key.reveal() if c.api_key else None
                client = QdrantClient(path=c.path) if c.path else QdrantClient(
                    url=c.url, api_key=api_key, check_compatibility=False)  # no call before the first erase
                try:
                    self._check(client)
                except BaseException:
                    client.close()
                    raise
                self._client = client
        return self._client

    def count(self, subject: Subject) -> int:
        """How many of the subject's points the collection holds."""
        return len(self._matches(subject))

    def delete(self, subject: Subject) -> int:
        """Delete the subject's points; how many went."""
        found = self._matches(subject)
        deleted = 0
        for start in range(0, len(found), CHUNK):
            chunk = found[start:start + CHUNK]
            ids = [point for point, _ in chunk]
            guards = [_any_of(column, [v for _, values in chunk for v in values[column]])
                      for column, _ in self.config.where]
            with self.errors("delete"):
                self.client.delete(self.config.table, points_selector=models.FilterSelector(
                    filter=models.Filter(must=[models.HasIdCondition(has_id=ids), *guards])), wait=True)
                left = self.client.count(self.config.table, exact=True, count_filter=models.Filter(
                    must=[models.HasIdCondition(has_id=ids)])).count
            deleted += len(ids) - left
        return deleted

    def compact(self) -> dict[str, Any]:
        """Nothing to ask: Qdrant's optimizer vacuums deleted points from its segments by itself."""
        return {}

    def close(self) -> None:
        """Close the client (and release local mode's lock on its folder)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _check(self, client: QdrantClient) -> None:
        """The collection is there, and some point has each where field (unless it is empty)."""
        name = self.config.table
        if not client.collection_exists(name):
            raise PermanentError(f"{self.label}: no such collection")
        if not client.count(name, exact=True).count:
            return
        for column, _ in self.config.where:
            having = models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=column))])
            if not client.count(name, exact=True, count_filter=having).count:
                raise PermanentError(f"{self.label}: no point has the payload field {column!r}")

    def where_values(self) -> Iterator[WhereBatch]:
        """Every point's where payload fields as compared (never the vectors), a scroll page at a time."""
        fields = [column for column, _ in self.config.where]
        collector = Collector(self.config.keys)
        offset: Any = None
        while True:
            with self.errors("read"):
                records, offset = self.client.scroll(
                    self.config.table, limit=PAGE, offset=offset, with_vectors=False,
                    with_payload=models.PayloadSelectorInclude(include=fields))
            for record in records:
                collector.whose_json(record.payload or {}, [False] * len(self.config.keys))
            if collector.rows:
                yield collector.batch()
            if offset is None:
                return

    def _matches(self, subject: Subject) -> list[Match]:
        """Each point of the subject's, with the stored values that made it theirs."""
        sought = Sought(self.config.keys, [subject])
        if sought.nobody:
            return []
        conditions: list[models.Condition] = [_any_of(key.column, list(sought.owners[key.column]), typed=True)
                      for key in sought.keys if key.fold is None]
        fields = [column for column, _ in self.config.where]
        found: list[Match] = []
        offset: Any = None
        while True:
            with self.errors("read"):
                records, offset = self.client.scroll(
                    self.config.table, scroll_filter=models.Filter(must=conditions) if conditions else None,
                    limit=PAGE, offset=offset, with_vectors=False,
                    with_payload=models.PayloadSelectorInclude(include=fields))
            for record in records:
                if (match := _match(sought, record.payload or {})) is not None:
                    found.append((record.id, match))
            if offset is None:
                return found

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Translate the client's errors, naming the system and collection; an answer's status, never
        its body (which may echo a filter's values)."""
        where = f"{self.label} ({action})"
        try:
            yield
        except (PermanentError, TransientError):
            raise
        except UnexpectedResponse as exc:
            status = exc.status_code or 0
            text = f"{where}: HTTP {status} {exc.reason_phrase}".rstrip()
            raise (TransientError(text) if status == 429 or status >= 500 else PermanentError(text)) from exc
        except (ResponseHandlingException, httpx.TransportError, TimeoutError, ConnectionError) as exc:
            raise TransientError(f"{where}: unreachable ({type(exc).__name__})") from exc
        except RuntimeError as exc:  # local mode: another client holds the folder
            raise TransientError(f"{where}: {one_line(exc)}") from exc
        except (ValueError, OSError, Malformed) as exc:  # local mode: no such collection; a bad folder
            raise PermanentError(f"{where}: {one_line(exc)}") from exc


def _match(sought: Sought, payload: dict[str, Any]) -> dict[str, list[Any]] | None:
    """The stored values of each where field that made the payload the subject's, or None if it is not."""
    if not sought.whose_json(payload, [False] * len(sought.keys)):
        return None
    return {key.column: [v for v in json_values(payload, key.column) or () if sought.whose_value(key, v)]
            for key in sought.keys}


def _any_of(column: str, values: Sequence[Any], typed: bool = False) -> models.Filter:
    """The field holds one of the values: text as text, integers as integers (with `typed`, each
    value is also tried as an integer written plainly)."""
    texts = sorted({v for v in values if isinstance(v, str)})
    numbers = {v for v in values if isinstance(v, int) and not isinstance(v, bool)}
    if typed:
        numbers |= {n for v in texts if (n := as_integer(v)) is not None}
    numbers = {n for n in numbers if -INT64 <= n < INT64}
    should: list[models.Condition] = []
    if texts:
        should.append(models.FieldCondition(key=column, match=models.MatchAny(any=texts)))
    if numbers:
        should.append(models.FieldCondition(key=column, match=models.MatchAny(any=sorted(numbers))))
    if not should:  # no value can be held: a filter that matches nothing
        should.append(models.HasIdCondition(has_id=[]))
    return models.Filter(should=should)
