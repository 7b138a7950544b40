"""A short chaos run under load (benchmarks/chaos.py; the full one lasts 10 minutes): three workers,
a beat and the API on PostgreSQL and RabbitMQ; requests by CLI, task and HTTP with duplicates and bad
input; every kind of fault at random moments from a fixed seed. Nothing is lost, nothing is wrong."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"


def test_a_short_chaos_run_loses_nothing_and_changes_nothing_else(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two minutes of load and faults (worker SIGKILL and SIGTERM, RabbitMQ and PostgreSQL restarts, targets cut
    off) over 150 subjects: `lost 0, wrong 0`, and every fault type was injected at least once."""
    for tool in ("rabbitmqctl", "pg_ctlcluster"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not here: the services cannot be restarted by this test")
    spec = importlib.util.spec_from_file_location("chaos", SCRIPT)
    assert spec is not None and spec.loader is not None
    chaos = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "chaos", chaos)  # its dataclasses look their module up there
    spec.loader.exec_module(chaos)
    # seed 3 draws all five fault types within the first five faults (about 80 s)
    code = chaos.chaos_run(minutes=2, subjects=150, rate=3, seed=3, every=(6, 10), root=tmp_path)
    out = capsys.readouterr().out
    assert "lost 0, wrong 0," in out, out
    assert code == 0
    injected = {line.split("fault ")[1].rsplit(" ", 1)[0].strip() for line in out.splitlines()
                if line.startswith("fault ")}
    assert injected == set(chaos.FAULTS.values()), out
