"""A second distribution claiming the kind `echo`."""

from erasure_echo import EchoConnector

__all__ = ["EchoConnector"]
