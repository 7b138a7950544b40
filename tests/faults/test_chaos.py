"""A short chaos run under load (benchmarks/chaos.py; the full one lasts 10 minutes), run as a user
runs it, in a process of its own: three workers, a beat and the API on PostgreSQL and RabbitMQ;
requests by CLI, task and HTTP with duplicates and bad input; every kind of fault at random moments
from a fixed seed. Nothing is lost, nothing is wrong."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"
FAULTS = {"worker SIGKILL", "worker SIGTERM", "RabbitMQ restart", "PostgreSQL restart", "target unreachable"}


def test_a_short_chaos_run_loses_nothing_and_changes_nothing_else(tmp_path: Path) -> None:
    """Two minutes of load and faults (worker SIGKILL and SIGTERM, RabbitMQ and PostgreSQL restarts, targets
    cut off) over 150 subjects: exit 0 with `lost 0, wrong 0`, and every fault type was injected."""
    for tool in ("rabbitmqctl", "pg_ctlcluster"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not here: the services cannot be restarted by this test")
    # seed 3 draws all five fault types within the first five faults (about 80 s)
    done = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "2", "--subjects", "150", "--rate", "3",
                           "--seed", "3", "--fault-every", "6", "10"],
                          capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    out = done.stdout
    assert "lost 0, wrong 0," in out, out[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, out[-3000:]
    injected = {line.split("fault ")[1].rsplit(" ", 1)[0].strip() for line in out.splitlines()
                if line.startswith("fault ")}
    assert injected == FAULTS, out
