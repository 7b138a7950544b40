"""The embedded default (SQLite store, kombu's sqla+sqlite broker) with a real worker
process: its built-in reconciler erases what an exemption kept once the lock ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import erasure, stub, write_config


def test_embedded_worker_rechecks_an_exemption_by_itself(tmp_path: Path) -> None:
    """A system exempt under a 2-second lock turns erased with no one asking, and stays completed."""
    config = write_config(tmp_path, stub("vault", locked_for_seconds=2), worker={"reconcile_seconds": 1})
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "worker", "worker", "--config", str(config)],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "ERASURE_LOG_FORMAT": "json"})
    try:
        request_id = json.loads(erasure(config, "submit", "--subject", "user_id=42", "--json").stdout)["request_id"]
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = json.loads(erasure(config, "status", request_id, "--json").stdout)
            system = status["systems"][0]["status"]
            if not seen or seen[-1] != (status["status"], system):
                seen.append((status["status"], system))
            if system == "erased":
                break
            assert worker.poll() is None, log.read_text()[-2000:]
            time.sleep(0.3)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)

    assert ("completed", "exempt") in seen, seen
    assert seen[-1] == ("completed", "erased"), (seen, log.read_text()[-2000:])
    assert status["systems"][0]["items_erased"] == 2
