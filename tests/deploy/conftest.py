"""What the deploy tests read and run: the manifests under deploy/, the environment the code reads,
the commands the files run, and real `erasure` processes started the way the manifests start them
(against a PostgreSQL database and a RabbitMQ vhost of their own)."""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PG_ADMIN_URL, free_port, own_vhost, scratch_database

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SOURCES = (ROOT / "worker", ROOT / "connectors")
KUBERNETES_VERSION = "1.31.0"  # a release KEDA 2.16 (the CRD models' version) runs on; deploy/README.md says so


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


WORKERS = ("erasure-worker-sql", "erasure-worker-s3", "erasure-worker-snapshot")  # the worker Deployments


def deployment(name: str) -> Document:
    """The Deployment of that name in deploy/k8s."""
    (found,) = [doc for doc in of_kind("Deployment") if doc.name == name]
    return found


def erasure_containers() -> list[tuple[Document, dict[str, Any]]]:
    """Every container of every Deployment (each runs the erasure-worker image)."""
    return [(doc, container) for doc in of_kind("Deployment") for container in pod_spec(doc)["containers"]]


def compose_file() -> dict[str, Any]:
    """deploy/compose.yaml, with YAML merge keys applied (as Docker Compose applies them)."""
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8")))


def compose_erasure_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the erasure-worker image."""
    return {name: service for name, service in compose_file()["services"].items()
            if service.get("image", "").startswith("erasure-worker")}


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


# ------------------------------------------------------------------------------------------------
# commands


OPERATORS = set(";&|()<>")


def shell_words(text: str) -> list[list[str]]:
    """A shell text as its simple commands' words: split at line ends and | ; && ||, comments left
    out, `$(...)` taken as a command of its own, a leading `exec` or VAR=value dropped."""
    text = text.replace("\\\n", " ")
    inner = re.findall(r"\$\(([^()]*)\)", text)
    text = re.sub(r"\$\(([^()]*)\)", "SUBSTITUTED", text)
    commands: list[list[str]] = []
    for line in [*text.splitlines(), *inner]:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="".join(sorted(OPERATORS)))
        lexer.whitespace_split = True
        current: list[str] = []
        for word in lexer:
            if set(word) <= OPERATORS:
                commands.append(current)
                current = []
            else:
                current.append(word)
        commands.append(current)
    return [words for words in map(_without_prefix, commands) if words]


def _without_prefix(words: list[str]) -> list[str]:
    while words and (words[0] == "exec" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
        words = words[1:]
    return words


def erasure_invocations(words: list[str]) -> list[list[str]]:
    """The `erasure` commands in one command's words: `erasure ...` itself, or after `--`
    (kubectl exec), or after a service or image name (docker compose exec api erasure ...);
    never `erasure` as an option's value (`rabbitmqctl -p erasure`)."""
    found = []
    for at, word in enumerate(words):
        before = words[at - 1] if at else None
        if word == "erasure" and (before is None or before == "--" or not before.startswith("-")):
            found.append(words[at + 1:])
    return found


def exec_words(command: list[str]) -> list[list[str]]:
    """An exec-form command as the commands it runs: `sh -c SCRIPT` is the script's."""
    if len(command) >= 3 and command[0] in ("sh", "/bin/sh", "bash") and command[1] == "-c":
        return shell_words(command[2])
    return [command]


def deploy_commands() -> list[tuple[str, list[str]]]:
    """Every command the deploy files run, with where: the Dockerfile's CMD, compose's commands and
    health checks, the Kubernetes containers' commands, args and exec probes."""
    found: list[tuple[str, list[str]]] = []
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith(("CMD ", "ENTRYPOINT ")):
            found.append(("Dockerfile " + line.split()[0], json.loads(line.split(" ", 1)[1])))
    for name, service in compose_file()["services"].items():
        if "command" in service:
            found += [(f"compose {name} command", words) for words in exec_words(list(service["command"]))]
        test = service.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD":
            found.append((f"compose {name} healthcheck", list(test[1:])))
        elif test and test[0] == "CMD-SHELL":
            found += [(f"compose {name} healthcheck", words) for words in shell_words(test[1].replace("$$", "$"))]
    for doc, container in erasure_containers():
        where = f"{doc} container {container['name']}"
        found += [(where, words) for words in exec_words([*container.get("command", []), *container.get("args", [])])]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = container.get(probe, {}).get("exec", {}).get("command")
            if command:
                found += [(f"{where} {probe}", words) for words in exec_words(list(command))]
    return found


# ------------------------------------------------------------------------------------------------
# real processes


@dataclass(frozen=True)
class Stack:
    """The environment the manifests give a container, pointing at real services."""

    env: dict[str, str]
    store_url: str
    broker_url: str


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """deploy/erasure.toml with its store on a PostgreSQL database and its broker on a RabbitMQ vhost,
    both of these tests' own, and fresh keys: what compose and the Secrets give every container."""
    with scratch_database(PG_ADMIN_URL, 5432, "PostgreSQL") as store, own_vhost("erasure-deploy") as broker:
        bin_dir = str(Path(sys.executable).parent)  # as PATH=/opt/venv/bin:$PATH in the image
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "ERASURE_CONFIG": str(DEPLOY / "erasure.toml"), "ERASURE_LOG_FORMAT": "json",
               "ERASURE_STORE_URL": store, "ERASURE_BROKER_URL": broker,
               "ERASURE_SECRET_KEY": secrets.token_hex(32), "ERASURE_SUBJECT_KEY": secrets.token_hex(32)}
        env.pop("ERASURE_KEY_FILE", None)
        env.pop("ERASURE_MLFLOW_TRACKING_URI", None)
        yield Stack(env, store, broker)


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
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

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


def container_command(name: str) -> list[str]:
    """The command of a Deployment's (first) container in deploy/k8s."""
    return list(pod_spec(deployment(name))["containers"][0]["command"])


def seed_store(stack: Stack) -> None:
    """Migrate the stack's store (as the first process to open it does) and record two requests with
    systems settled in the last hour and one still pending, so every metric family has samples."""
    from worker.config import load
    from worker.queue.dispatch import celery_runtime
    from worker.store.models import Request, SystemTask, utcnow

    with pytest.MonkeyPatch.context() as patch:
        for name in ("ERASURE_STORE_URL", "ERASURE_BROKER_URL", "ERASURE_SECRET_KEY", "ERASURE_SUBJECT_KEY"):
            patch.setenv(name, stack.env[name])
        rt = celery_runtime(load(DEPLOY / "erasure.toml"))
        try:
            rt.check()
            now = utcnow()
            with rt.transaction() as session:
                for status, system_status, started in (("completed", "erased", 600), ("in_progress", "pending", None)):
                    request = Request(id=str(uuid.uuid4()), subject_ref=secrets.token_hex(10), status=status,
                                      received_at=now - timedelta(seconds=900), deadline=now + timedelta(days=30))
                    request.systems = [SystemTask(
                        system="app-db", kind="sql", status=system_status, attempts=0 if started is None else 1,
                        started_at=None if started is None else now - timedelta(seconds=started),
                        finished_at=None if started is None else now - timedelta(seconds=started - 3))]
                    session.add(request)
        finally:
            rt.close()


@dataclass(frozen=True)
class Api:
    """A running `erasure api`, started with the command of deploy/k8s/api.yaml."""

    url: str
    process: Process


@pytest.fixture(scope="session")
def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API Deployment's command on a free loopback port (instead of 0.0.0.0:8080) over a seeded store."""
    import httpx

    seed_store(stack)
    command = container_command("erasure-api")
    port = free_port()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    process = Process(command, stack.env, tmp_path_factory.mktemp("api") / "api.log")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        process.wait_until("the API to answer", answers)
        yield Api(url, process)
    finally:
        process.stop()
