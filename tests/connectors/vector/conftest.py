"""Fixtures of the vector kind's tests: a real LanceDB table in a folder, and a real Qdrant
collection in local mode, each filled with rows whose vectors are told apart by their bytes."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from qdrant_client import QdrantClient, models

DIMS = 8
Rows = Sequence[dict[str, Any]]


def vector_of(row: int) -> list[float]:
    """A vector no other row has: its bytes say which row it is."""
    return [float(np.float32(1000.0 + row + i / 8)) for i in range(DIMS)]


def arrow_rows(rows: Rows, first: int, schema: dict[str, pa.DataType]) -> pa.Table:
    """The rows as an Arrow table, each with its own vector (numbered from `first`)."""
    columns: dict[str, pa.Array] = {name: pa.array([r.get(name) for r in rows], kind) for name, kind in schema.items()}
    flat = pa.array([x for i in range(len(rows)) for x in vector_of(first + i)], pa.float32())
    columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, DIMS)
    return pa.table(columns)


@pytest.fixture
def lance_table(tmp_path: Path) -> Callable[..., Any]:
    """Make table `docs` in the test's folder (or at `uri`) from batches of rows, each batch one fragment;
    the table back."""

    def make(*batches: Rows, schema: dict[str, pa.DataType] | None = None, name: str = "docs",
             uri: str | None = None, options: dict[str, str] | None = None) -> Any:
        kinds = schema or {"user_id": pa.int64(), "email": pa.string()}
        db = lancedb.connect(uri or tmp_path / "lance", storage_options=options)
        table, first = None, 0
        for batch in batches:
            data = arrow_rows(batch, first, kinds)
            first += len(batch)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if table is None:
                    table = db.create_table(name, data)
                else:
                    table.add(data)
        return table

    return make


@pytest.fixture
def qdrant_path(tmp_path: Path) -> Callable[[Rows], str]:
    """Make collection `docs` in a local-mode folder from payloads (point ids 1, 2, ...); the folder back."""

    def make(payloads: Rows) -> str:
        folder = str(tmp_path / "qdrant")
        client = QdrantClient(path=folder)
        client.create_collection("docs", vectors_config=models.VectorParams(size=DIMS, distance=models.Distance.DOT))
        client.upsert("docs", [models.PointStruct(id=i + 1, vector=vector_of(i), payload=dict(p))
                               for i, p in enumerate(payloads)])
        client.close()
        return folder

    return make


@pytest.fixture
def qdrant_client() -> Iterator[Callable[[str], QdrantClient]]:
    """Open a local-mode folder to look at it (closed after the test)."""
    opened: list[QdrantClient] = []

    def open_folder(folder: str) -> QdrantClient:
        opened.append(QdrantClient(path=folder))
        return opened[-1]

    yield open_folder
    for client in opened:
        client.close()


@pytest.fixture
def vector_bytes() -> Callable[[int], bytes]:
    """The bytes of row n's vector as float32, as a store keeps them on disk."""
    return lambda row: np.array(vector_of(row), np.float32).tobytes()
