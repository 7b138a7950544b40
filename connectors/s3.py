"""Placeholder: being written."""

from connectors.base import Connector, SystemConfig


class S3Config(SystemConfig):
    """Placeholder."""


class S3Connector(Connector):
    """Placeholder."""

    kind = "s3"
    config_class = S3Config
