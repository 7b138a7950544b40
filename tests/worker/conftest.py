"""Fixtures for orchestration tests: configs written as TOML files, a runtime whose
messages are kept in a list, and a drain loop that plays the worker without a broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from worker.config import load
from worker.engine import fanout, passes
from worker.integrations import mlflow_lineage
from worker.runtime import Runtime

IDENTIFIERS = """
[identifiers]
user_id = { pattern = '^[0-9]{1,18}$' }
email = { pattern = '^[^@\\s]+@[^@\\s]+$', normalize = "lower" }
"""


def toml_value(value: Any) -> str:
    """A Python value as a TOML value (strings, numbers, booleans, flat lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def stub(name: str, uses: list[str] | None = None, **knobs: Any) -> str:
    """The TOML of one stub system."""
    fields = {"name": name, "kind": "stub", "uses": uses or ["user_id"], **knobs}
    return "[[systems]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items())


def write_config(folder: Path, systems: str, store_url: str | None = None, top: str = "", worker: str = "") -> Path:
    """An erasure.toml in the folder with the given systems and a fast-retry [worker] table."""
    path = folder / "erasure.toml"
    store = store_url or f"sqlite:///{folder}/state.db"
    path.write_text(
        f'store_url = "{store}"\nbroker_url = "sqla+sqlite:///{folder}/queue.db"\n{top}\n'
        f"[worker]\nmax_attempts = 3\nretry_backoff_seconds = 0.01\n{worker}\n"
        f"{IDENTIFIERS}\n{systems}"
    )
    return path


class ListDispatch:
    """A dispatcher that keeps messages in a list instead of sending them to a broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def start(self, request_id: str) -> None:
        """Keep an erasure.start message."""
        self.sent.append(("start", request_id))

    def erase(self, request_id: str, system: str, kind: str, countdown: float | None = None,
              also: Sequence[str] = ()) -> None:
        """Keep an erasure.erase_system message."""
        self.sent.append(("erase", request_id, system, kind, countdown, tuple(also)))

    def tag(self, model: str, version: str) -> None:
        """Keep an erasure.tag_mlflow message."""
        self.sent.append(("tag", model, version))


def drain(rt: Runtime, limit: int = 500) -> int:
    """Run every kept message (and those they send) the way a worker would; returns how many."""
    dispatch = rt.dispatch
    assert isinstance(dispatch, ListDispatch)
    done = 0
    while dispatch.sent:
        message = dispatch.sent.pop(0)
        if message[0] == "start":
            fanout.start(rt, message[1])
        elif message[0] == "tag":  # Celery's retries, played at once
            attempt = 1
            while mlflow_lineage.tag(rt, message[1], message[2], attempt) is not None:
                attempt += 1
        else:
            passes.erase_system(rt, message[1], message[2], message[5] if len(message) > 5 else ())
        done += 1
        assert done < limit, "messages keep coming"
    return done


def at_once(*calls: Callable[[], Any]) -> list[BaseException]:
    """Run the calls in threads of their own, released together; what any of them raised."""
    barrier, problems = threading.Barrier(len(calls)), list[BaseException]()

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the caller asserts there were none
            problems.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return problems


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Build a runtime over a config of the given systems, with a ListDispatch."""
    made: list[Runtime] = []

    def make(systems: str, store_url: str | None = None, **kwargs: Any) -> Runtime:
        rt = Runtime(load(write_config(tmp_path, systems, store_url, **kwargs)), dispatch=ListDispatch())
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
