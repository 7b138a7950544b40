"""Connectors, one module per kind; REGISTRY maps a system's `kind` to its connector."""

from connectors.base import Connector
from connectors.s3 import S3Connector
from connectors.snapshots import SnapshotConnector
from connectors.sql import SqlConnector
from connectors.stub import StubConnector

REGISTRY: dict[str, type[Connector]] = {
    "sql": SqlConnector,
    "s3": S3Connector,
    "snapshot": SnapshotConnector,
    "stub": StubConnector,
}
