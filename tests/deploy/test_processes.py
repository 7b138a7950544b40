"""The manifests' commands and probes, run for real: a worker started with the worker Deployment's
command answers the liveness probe's ping and stops answering once stopped; the API started with its
Deployment's command answers its probes' paths, and serves /metrics only to a token."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import WORKERS, Api, Process, Stack, compose_file, container_command, deployment, pod_spec


def probe_command(name: str, probe: str) -> list[str]:
    return list(pod_spec(deployment(name))["containers"][0][probe]["exec"]["command"])


def run_probe(command: list[str], stack: Stack, pid: int, timeout: str) -> subprocess.CompletedProcess[str]:
    """A worker's exec probe as the kubelet runs it in the container, where the worker is PID 1: here
    the node is named by the worker process's own pid, and the reply timeout is shortened."""
    assert command[:2] == ["sh", "-c"] and "erasure-1@" in command[2] and "--timeout 10" in command[2]
    script = command[2].replace("erasure-1@", f"erasure-{pid}@").replace("--timeout 10", f"--timeout {timeout}")
    env = {**stack.env, "HOSTNAME": socket.gethostname()}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_worker_probes_ping_the_running_worker(stack: Stack, tmp_path: Path) -> None:
    """The startup and liveness probes succeed while the worker runs, fail once it has stopped, and a
    SIGTERM stops the worker cleanly (exit 0)."""
    worker = Process(container_command("erasure-worker-sql"), stack.env, tmp_path / "worker.log")
    try:
        worker.wait_until("the worker to be ready", lambda: any(
            e.get("event", "").endswith(" ready.") for e in worker.events()))
        for probe in ("startupProbe", "livenessProbe"):
            done = run_probe(probe_command("erasure-worker-sql", probe), stack, worker.proc.pid, "10")
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"erasure-{worker.proc.pid}@" in done.stdout and "pong" in done.stdout
    finally:
        assert worker.stop() == 0
    done = run_probe(probe_command("erasure-worker-sql", "livenessProbe"), stack, worker.proc.pid, "2")
    assert done.returncode != 0 and "No nodes replied" in done.stdout + done.stderr


def test_every_worker_group_has_the_same_probe() -> None:
    """The three worker groups and the compose worker's health check run one and the same ping."""
    probes = {tuple(probe_command(name, probe)) for name in WORKERS for probe in ("startupProbe", "livenessProbe")}
    assert len(probes) == 1
    (script,) = {p[2] for p in probes}
    test = compose_file()["services"]["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and test[1].replace("$$", "$") == script.removeprefix("exec ")


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe", "readinessProbe"])
def test_api_answers_its_probes(api: Api, probe: str) -> None:
    """Each probe's path answers 200 without a token on the API run with its Deployment's command."""
    path = pod_spec(deployment("erasure-api"))["containers"][0][probe]["httpGet"]["path"]
    answer = httpx.get(api.url + path, timeout=10)
    assert answer.status_code == 200, answer.text


def test_api_serves_metrics_only_to_a_token(api: Api) -> None:
    """/metrics is 401 without a token and 200 with the compose stack's read token."""
    assert httpx.get(f"{api.url}/metrics", timeout=10).status_code == 401
    answer = httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer compose-dev-token"}, timeout=30)
    assert answer.status_code == 200 and "erasure_requests" in answer.text
