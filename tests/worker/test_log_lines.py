"""Every line `erasure worker`, `beat` and `api` write is one JSON object: Celery's and uvicorn's own
lines, Python's warnings and tracebacks included, never the banner unless asked, never an
identifier's value or a query string. Real processes on the embedded broker, with a connector
plugin installed the way any distribution installs one (an entry point on the path) that warns on
import and has bugs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import USER_IDS_ONLY, Process, api_tokens, free_port, stub, system_table, write_config

VALUE = "90417733"  # the subject's user_id: never in a line
QUERY = "probe=73318"  # a query string: never in a line
TOKEN = "log-lines-token"
PLUGIN = '''
"""Two buggy connector kinds: `crashy` raises with the subject's value in its message, `broken`
cannot even be made. Importing this module warns."""

import dataclasses
import warnings

from connectors.stub import StubConfig, StubConnector

warnings.warn("the buggy plugin is imported", UserWarning)


class CrashyConfig(StubConfig):
    @classmethod
    def read(cls, reader):
        return dataclasses.replace(super().read(reader), kind=cls.KIND)


class CrashyConnector(StubConnector):
    kind = "crashy"
    config_class = type("CrashyKindConfig", (CrashyConfig,), {"KIND": "crashy"})

    def erase(self, subject):
        raise KeyError(",".join(subject.values("user_id")))


class BrokenConnector(StubConnector):
    kind = "broken"
    config_class = type("BrokenKindConfig", (CrashyConfig,), {"KIND": "broken"})

    def __init__(self, config):
        raise RuntimeError("a bug in the plugin: the connector cannot be made")
'''


def install_plugin(folder: Path) -> Path:
    """The plugin's module and its distribution's metadata (entry points) in a folder for PYTHONPATH."""
    folder.mkdir()
    (folder / "buggy_plugin.py").write_text(PLUGIN)
    meta = folder / "buggy_plugin-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: buggy-plugin\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[erasure.connectors]\ncrashy = buggy_plugin:CrashyConnector\n"
                                           "broken = buggy_plugin:BrokenConnector\n")
    return folder


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A config of a stub, a crashy and a broken system with an API token, and the processes' environment."""
    systems = (stub("ledger", uses=["user_id"]) + system_table("vault", "crashy", uses=["user_id"])
               + system_table("archive", "broken", uses=["user_id"]))
    config = write_config(tmp_path, systems, identifiers=USER_IDS_ONLY, top=api_tokens({TOKEN: ["submit", "read"]}),
                          worker={"reconcile_seconds": 1})
    env = {**os.environ, "ERASURE_LOG_FORMAT": "json", "PYTHONPATH": str(install_plugin(tmp_path / "plugin"))}
    for name in ("ERASURE_STORE_URL", "ERASURE_BROKER_URL"):  # the config's embedded parts, whatever the shell says
        env.pop(name, None)
    return config, env


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """The processes a test starts, stopped afterwards whatever happens."""
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def lines_of(process: Process) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as a JSON object (a line that is not one fails)."""
    text, parsed = process.log.read_text(), []
    assert text.endswith("\n"), f"{process.log.name} ends in the middle of a line"
    for number, line in enumerate(text.split("\n")[:-1], 1):
        try:
            event = json.loads(line)
        except ValueError:
            raise AssertionError(f"{process.log.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(event, dict) and {"event", "level", "logger", "timestamp"} <= set(event), line
        parsed.append(event)
    return parsed


def test_worker_beat_and_api_write_only_json_lines(setup: tuple[Path, dict[str, str]], processes: list[Process],
                                                   tmp_path: Path) -> None:
    """A worker, a beat and an API that take a request, serve queries, warn and crash write nothing
    but JSON objects, with the warnings and the traceback as fields and the access log's path cut
    before its query; no line holds the subject's value or the query string."""
    config, env = setup
    port = free_port()
    worker, beat, api = (Process(["erasure", *argv, "--config", str(config)], env, tmp_path / f"{argv[0]}.log")
                         for argv in (["worker"], ["beat"], ["api", "--port", str(port)]))
    processes += [worker, beat, api]
    worker.wait_until("the worker to be ready", lambda: any(e["event"].endswith(" ready.") for e in worker.events()))
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    api.wait_until("the API to answer", lambda: _answers(url))
    assert httpx.post(f"{url}/v1/requests", json={"subject": {"user_id": VALUE}}, headers=auth).status_code == 202
    assert httpx.get(f"{url}/v1/requests?{QUERY}&status=completed", headers=auth).status_code == 200
    assert httpx.get(f"{url}/nowhere?{QUERY}").status_code == 404
    worker.wait_until("the crash and the traceback", lambda: any(
        e["event"] == "system.crashed" for e in worker.events()) and any("exception" in e for e in worker.events()))
    beat.wait_until("beat to send the reconciler", lambda: any("Sending due task" in e["event"] for e in beat.events()))
    for process in processes:
        process.stop()

    everything = {p.log.name: lines_of(p) for p in processes}
    text = "".join(p.log.read_text() for p in processes)
    assert VALUE not in text and QUERY not in text
    for name, events in everything.items():
        warned = [e for e in events if e["event"] == "python.warning"]
        assert any(e["message"] == "the buggy plugin is imported" for e in warned), name
    worker_events = everything["worker.log"]
    (traceback,) = {e["exception"] for e in worker_events if "exception" in e}
    assert "Traceback (most recent call last)" in traceback and "RuntimeError: a bug in the plugin" in traceback
    if os.geteuid() == 0:  # Celery's warning to a worker run as root
        assert any(e.get("category") == "SecurityWarning" for e in worker_events)
    assert any(e["event"] == "worker: Warm shutdown (MainProcess)" for e in worker_events)
    requests = [e for e in everything["api.log"] if e["event"] == "http.request"]
    assert {(e["method"], e["path"], e["status"]) for e in requests} >= {
        ("POST", "/v1/requests", 202), ("GET", "/v1/requests", 200), ("GET", "/nowhere", 404)}


def test_the_banner_is_shown_only_when_asked(setup: tuple[Path, dict[str, str]], processes: list[Process],
                                             tmp_path: Path) -> None:
    """`erasure beat --banner` prints Celery's banner before its JSON lines."""
    config, env = setup
    beat = Process(["erasure", "beat", "--banner", "--config", str(config)], env, tmp_path / "beat.log")
    processes.append(beat)
    beat.wait_until("beat to send the reconciler", lambda: any("Sending due task" in e["event"] for e in beat.events()))
    beat.stop()
    assert "celery beat v" in beat.log.read_text() and "Configuration ->" in beat.log.read_text()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
