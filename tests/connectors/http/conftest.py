"""The fake internal service the http connector's tests call, on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import FakeService, start_service


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeService]:
    """The service, running; its signing secret and token in the environment the config reads."""
    running = start_service(monkeypatch)
    yield running
    running.stop()
