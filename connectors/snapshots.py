"""Placeholder: being written."""

from connectors.base import Connector, SystemConfig


class SnapshotConfig(SystemConfig):
    """Placeholder."""


class SnapshotConnector(Connector):
    """Placeholder."""

    kind = "snapshot"
    config_class = SnapshotConfig
