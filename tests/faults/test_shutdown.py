"""SIGTERM: the worker takes no new message, lets what runs finish within shutdown_grace_seconds,
and else hands it back — the claim released to pending, the message back on its queue — so the
next worker takes it at once, with no lease to wait out."""

from __future__ import annotations

import signal
import tomllib
from pathlib import Path

import pytest

from tests.helpers import all_settled, fault_config, status, stub, submit, wait_for
from worker.config import load
from worker.errors import ConfigError

pytestmark = pytest.mark.faults


def running(config: Path, request_id: str, system: str = "slow") -> bool:
    """Whether the request's system is being erased now."""
    return bool(status(config, request_id)["by_system"][system]["status"] == "running")


def test_sigterm_lets_the_running_erasure_finish_and_takes_no_new_work(tmp_path: Path, embedded, start_worker):
    """The erasure under way when SIGTERM comes finishes and is recorded; the others wait for the next worker."""
    # 8 s an erasure: the polling below (a command per request) sees the first one run well before it ends
    config = fault_config(tmp_path, embedded, stub("slow", delay_seconds=8), {"shutdown_grace_seconds": 20})
    requests = [submit(config, user) for user in (1, 2, 3)]
    first = start_worker(config, "--concurrency", "1")
    busy = wait_for("an erasure to start", lambda: [r for r in requests if running(config, r)], alive=first)
    first.signal(signal.SIGTERM)

    assert first.wait() == 0, first.tail()
    lines = first.log.read_text().splitlines()
    stopped = next(i for i, line in enumerate(lines) if "Warm shutdown" in line)
    assert not [line for line in lines[stopped:] if '"system.running"' in line], "work taken after SIGTERM"
    after_stop = {r: status(config, r)["by_system"]["slow"] for r in requests}
    assert after_stop[busy[0]]["status"] == "erased", after_stop
    untouched = [r for r, s in after_stop.items() if s["attempts"] == 0]
    assert untouched and all(s["status"] == "erased" for r, s in after_stop.items() if r not in untouched)
    assert first.events("worker.grace_expired") == []
    second = start_worker(config)
    done = wait_for("the other requests", all_settled(config, requests), alive=second)
    assert [s["status"] for s in done] == ["completed"] * 3
    assert all(s["by_system"]["slow"]["attempts"] == 1 for s in done), done
    assert {e["request_id"] for e in second.events("system.running")} == set(untouched)


def test_sigterm_hands_back_an_erasure_that_outlasts_the_grace(tmp_path: Path, backend, start_worker):
    """Past the grace, the system is pending again with its attempt not counted, and its message is
    back on the queue: the next worker erases it at once."""
    config = fault_config(tmp_path, backend, stub("slow", delay_seconds=600), {"shutdown_grace_seconds": 1})
    request_id = submit(config, 7)
    first = start_worker(config)
    wait_for("the erasure to start", lambda: running(config, request_id), alive=first)
    first.signal(signal.SIGTERM)

    assert first.wait() == 0, first.tail()
    handed = status(config, request_id)["by_system"]["slow"]
    assert (handed["status"], handed["attempts"]) == ("pending", 0), handed
    assert "handed back" in handed["error"]
    assert [e["request_id"] for e in first.events("system.handed_back")] == [request_id]
    assert first.events("worker.grace_expired")[0]["systems_handed_back"] == 1
    fault_config(tmp_path, backend, stub("slow"))  # the same system, no longer slow
    second = start_worker(config, "--no-beat")  # no reconciler: the message itself must be back
    [done] = wait_for("the handed-back request", all_settled(config, [request_id]), alive=second)
    assert done["status"] == "completed", done
    assert (done["by_system"]["slow"]["status"], done["by_system"]["slow"]["attempts"]) == ("erased", 1)


@pytest.mark.parametrize(("given", "lease", "grace"), [("", 600, 25.0), ("", 10, 5.0),
                                                      ("shutdown_grace_seconds = 0", 600, 0.0)])
def test_the_grace_defaults_to_25_seconds_within_half_the_lease(tmp_path: Path, embedded, given, lease, grace):
    """Unset, the grace is 25 s or half a shorter lease; 0 hands back at once."""
    config = fault_config(tmp_path, embedded, stub("slow"), {"lease_seconds": lease, **tomllib.loads(given)})
    assert load(config).worker.shutdown_grace_seconds == grace


def test_a_grace_as_long_as_the_lease_is_refused(tmp_path: Path, embedded):
    """A task may outlive its lease only to be claimed twice: the grace must end first."""
    config = fault_config(tmp_path, embedded, stub("slow"), {"lease_seconds": 30, "shutdown_grace_seconds": 30})
    with pytest.raises(ConfigError, match="shutdown_grace_seconds: must be 0 or more and under lease_seconds"):
        load(config)
