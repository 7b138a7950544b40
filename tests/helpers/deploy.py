"""deploy/: the manifests as the deploy tests read them, and their commands run for real."""


from __future__ import annotations

import ast
import functools
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.runtime import json_events
from worker.config import load
from worker.queue.dispatch import celery_runtime
from worker.store.models import Request, SystemTask, utcnow

ROOT = Path(__file__).resolve().parents[2]  # the project: worker/, connectors/, docs/, deploy/, tests/

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SOURCES = (ROOT / "worker", ROOT / "connectors")
WORKERS = ("erasure-worker-sql", "erasure-worker-s3", "erasure-worker-snapshot")  # the worker Deployments


@dataclass(frozen=True)
class Document:
    """One YAML document of a manifest file."""

    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        """The resource's kind."""
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        """The resource's metadata.name."""
        return str(self.body["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}#{self.index} {self.kind}/{self.name}"


@functools.cache
def k8s_documents() -> tuple[Document, ...]:
    """Every document of every manifest under deploy/k8s, the example Secrets included (read once)."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        for index, body in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if body is not None:
                found.append(Document(path, index, body))
    return tuple(found)


def of_kind(kind: str) -> list[Document]:
    """The documents of one kind."""
    return [doc for doc in k8s_documents() if doc.kind == kind]


def pod_spec(doc: Document) -> dict[str, Any]:
    """A Deployment's pod spec."""
    return dict(doc.body["spec"]["template"]["spec"])


def deployment(name: str) -> Document:
    """The Deployment of that name in deploy/k8s."""
    (found,) = [doc for doc in of_kind("Deployment") if doc.name == name]
    return found


def erasure_containers() -> list[tuple[Document, dict[str, Any]]]:
    """Every container of every Deployment (each runs the erasure-worker image)."""
    return [(doc, container) for doc in of_kind("Deployment") for container in pod_spec(doc)["containers"]]


def container_command(name: str) -> list[str]:
    """The command of a Deployment's (first) container in deploy/k8s."""
    return list(pod_spec(deployment(name))["containers"][0]["command"])


def compose_file() -> dict[str, Any]:
    """deploy/compose.yaml, with YAML merge keys applied (as Docker Compose applies them)."""
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8")))


def python_files() -> list[Path]:
    """The project's code: worker/ and connectors/."""
    return sorted(path for folder in SOURCES for path in folder.rglob("*.py"))


def environment_read() -> dict[str, str]:
    """Every environment variable the code reads by a literal name, with where (os.environ.get,
    os.environ[...], os.getenv); what it only sets for libraries (setdefault, update) is left out."""
    found: dict[str, str] = {}
    for path in python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            name = _read_name(node)
            if name is not None:
                found.setdefault(name, f"{path.relative_to(ROOT)}:{node.lineno}")  # type: ignore[attr-defined]
    return found


def _read_name(node: ast.AST) -> str | None:
    def literal(args: list[ast.expr]) -> str | None:
        first = args[0] if args else None
        return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "get" and _is_environ(node.func.value):
            return literal(node.args)
        if node.func.attr == "getenv":
            return literal(node.args)
    if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
        return literal([node.slice]) if isinstance(node.slice, ast.expr) else None
    return None


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


@dataclass(frozen=True)
class Stack:
    """The environment the manifests give a container, pointing at real services."""

    env: dict[str, str]
    store_url: str
    broker_url: str


class Process:
    """One command of a manifest, run as a process in its own session with its log in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        assert argv[0] == "erasure", argv
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "worker", *argv[1:]], stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=log.parent, start_new_session=True)

    def events(self) -> list[dict[str, Any]]:
        """The JSON events logged so far."""
        return json_events(self.log.read_text())

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        """Poll until check() holds; fail with the log's end if the process exits or time runs out."""
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if check():
                return
            assert self.proc.poll() is None, f"exited while waiting for {what}:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM, as Kubernetes stops a pod; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@dataclass(frozen=True)
class Api:
    """A running `erasure api`, started with the command of deploy/k8s/api.yaml."""

    url: str
    process: Process


def seed_store(stack: Stack) -> None:
    """Migrate the stack's store (as the first process to open it does) and record two requests with
    systems settled in the last hour and one still pending, so every metric family has samples."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("ERASURE_STORE_URL", "ERASURE_BROKER_URL", "ERASURE_SECRET_KEY", "ERASURE_SUBJECT_KEY"):
            patch.setenv(name, stack.env[name])
        rt = celery_runtime(load(DEPLOY / "erasure.toml"))
        try:
            rt.check()
            now = utcnow()
            with rt.transaction() as session:
                for status_, system_status, started in (("completed", "erased", 600), ("in_progress", "pending", None)):
                    request = Request(id=str(uuid.uuid4()), subject_ref=secrets.token_hex(10), status=status_,
                                      received_at=now - timedelta(seconds=900), deadline=now + timedelta(days=30))
                    request.systems = [SystemTask(
                        system="app-db", kind="sql", status=system_status, attempts=0 if started is None else 1,
                        started_at=None if started is None else now - timedelta(seconds=started),
                        finished_at=None if started is None else now - timedelta(seconds=started - 3))]
                    session.add(request)
        finally:
            rt.close()
