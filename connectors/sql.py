"""Placeholder: being written."""

from connectors.base import Connector, SystemConfig


class SqlConfig(SystemConfig):
    """Placeholder."""


class SqlConnector(Connector):
    """Placeholder."""

    kind = "sql"
    config_class = SqlConfig
