"""Fixtures for orchestration tests: a runtime over a config written as a TOML file, whose
messages are kept in a list for tests.helpers.drain to play without a broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ListDispatch, write_config
from worker.config import load
from worker.runtime import Runtime


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Build a runtime over a config of the given systems (and write_config's other keys), with a ListDispatch."""
    made: list[Runtime] = []

    def make(systems: str, store_url: str | None = None, **kwargs: Any) -> Runtime:
        rt = Runtime(load(write_config(tmp_path, systems, store_url=store_url, **kwargs)), dispatch=ListDispatch())
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
